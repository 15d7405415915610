"""File contents stored beside the LMDB environment, under ``files/<id>``.

Contents are written to a temporary file in the same folder, fsynced, and
renamed into place (then the folder is fsynced), so a content file is either
whole or absent, whatever happens to the process or the machine.  Its record
(name, size, sha256...) is committed in LMDB only after that, through the
one write path; a crash in between leaves an unreferenced content file, never
a record without its contents.  Names given by users never become paths
here: a content file is named by its random id.

Copies run in the kernel (``copy_file_range``) chunk by chunk, while a
helper thread hashes each chunk of the *target* as soon as it is there (from
the page cache), so the checksum is that of the bytes stored, even if the
source changes under us, and a large copy costs about the hashing alone.
Where the kernel copy is not available, a read/write loop hashes each chunk
as it writes it.  (Hashing the source separately was the alternative
rejected: it could record a checksum of other bytes than those copied.)
"""

import concurrent.futures
import errno
import hashlib
import itertools
import os
import uuid

from ..errors import StorageError

CHUNK = 4 << 20  # read/write loop
KERNEL_CHUNK = 1 << 20  # small enough that hashing starts soon after copying does
FOLDER = "files"


def folder(directory):
    return os.path.join(directory, FOLDER)


def content_path(directory, file_id):
    return os.path.join(directory, FOLDER, file_id)


def new_id():
    return uuid.uuid4().hex


def _copy(source, target):
    """Copy the open binary file ``source`` into ``target``; ``(size, sha256)``."""
    try:
        return _kernel_copy(source.fileno(), target.fileno())
    except _NoKernelCopy:
        return _loop_copy(source, target)


class _NoKernelCopy(Exception):
    pass


_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}


def _hash_range(digest, buffer, fd, offset, count):
    """Hash ``count`` bytes of ``fd`` from ``offset``, read into the reused ``buffer``."""
    view = memoryview(buffer)
    while count:
        got = os.preadv(fd, [view[:min(count, len(buffer))]], offset)
        if not got:
            raise StorageError(f"file shrank while being stored (at byte {offset})")
        digest.update(view[:got])
        offset += got
        count -= got


def _kernel_copy(source, target):
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is None or not hasattr(os, "preadv"):
        raise _NoKernelCopy
    digest = hashlib.sha256()
    buffer = bytearray(KERNEL_CHUNK)  # used by the one hashing thread only
    size = 0
    hashed = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # one thread: chunks in order
        while True:
            try:
                count = copy_range(source, target, KERNEL_CHUNK)
            except OSError as exc:
                if size == 0 and exc.errno in _NO_COPY_RANGE:
                    raise _NoKernelCopy from exc
                raise
            if not count:
                break
            hashed.append(pool.submit(_hash_range, digest, buffer, target, size, count))
            size += count
    for future in hashed:
        future.result()
    return size, digest.hexdigest()


def _loop_copy(source, target):
    """Read/write copy; each chunk is hashed on a helper thread while it is
    written (both release the GIL); two buffers let the next read start."""
    digest = hashlib.sha256()
    buffers = [bytearray(CHUNK), bytearray(CHUNK)]
    size = 0
    hashing = None
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for turn in itertools.count():
            buffer = buffers[turn & 1]
            count = source.readinto(buffer)
            if hashing is not None:
                hashing.result()
                hashing = None
            if not count:
                break
            chunk = memoryview(buffer)[:count]
            hashing = pool.submit(digest.update, chunk)
            target.write(chunk)
            size += count
    return size, digest.hexdigest()


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(directory, file_id, source):
    """Store ``source`` (a local path, or bytes) as content ``file_id``; ``(size, sha256)``."""
    root = folder(directory)
    os.makedirs(root, exist_ok=True)
    final = content_path(directory, file_id)
    temp = os.path.join(root, f".tmp-{file_id}")
    try:
        with open(temp, "w+b") as target:
            if isinstance(source, (bytes, bytearray, memoryview)):
                target.write(source)
                size, checksum = len(source), hashlib.sha256(source).hexdigest()
            else:
                with open(source, "rb") as handle:
                    size, checksum = _copy(handle, target)
            target.flush()
            os.fsync(target.fileno())
        os.replace(temp, final)
        _fsync_dir(root)
    except BaseException as exc:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise StorageError(f"cannot store file contents in {root}: {exc}") from exc
        raise
    return size, checksum


def copy_verified(directory, file_id, checksum, destination, label):
    """Copy content ``file_id`` to ``destination`` if its sha256 is ``checksum``.

    Written to a temporary file beside ``destination`` and renamed only when
    the checksum matches; otherwise ``StorageError`` naming ``label``.
    """
    parent = os.path.dirname(os.path.abspath(destination))
    os.makedirs(parent, exist_ok=True)
    temp = os.path.join(parent, f".{os.path.basename(destination)}.ml_dash-{new_id()}")
    try:
        with open(content_path(directory, file_id), "rb") as source, open(temp, "w+b") as target:
            _, actual = _copy(source, target)
        if actual != checksum:
            raise StorageError(
                f"stored file {label} is damaged: its sha256 is {actual}, its record says "
                f"{checksum}; the copy at {destination} was not made")
        os.replace(temp, destination)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    return destination


def read_verified(directory, file_id, checksum, label):
    """The bytes of content ``file_id``, or ``StorageError`` if they do not match ``checksum``."""
    with open(content_path(directory, file_id), "rb") as source:
        data = source.read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != checksum:
        raise StorageError(f"stored file {label} is damaged: its sha256 is {actual}, its record "
                           f"says {checksum}")
    return data


def remove(directory, file_id):
    """Delete content ``file_id`` if it is there."""
    try:
        os.unlink(content_path(directory, file_id))
    except FileNotFoundError:
        pass


def duplicate(directory, source_id, file_id):
    """Store a copy of content ``source_id`` as ``file_id``; ``(size, sha256)``."""
    return write(directory, file_id, content_path(directory, source_id))
