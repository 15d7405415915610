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
import re
import stat
import uuid

from ..errors import StorageError
from .layout import fsync_directory

CHUNK = 4 << 20  # read/write loop
KERNEL_CHUNK = 1 << 20  # small enough that hashing starts soon after copying does
FOLDER = "files"


# Every name ml_dash writes in files/: a content id (new_id) and its temporary.
_ID = re.compile(r"[0-9a-f]{32}\Z")
_TEMPORARY = re.compile(r"\.tmp-[0-9a-f]{32}\Z")


def folder(directory):
    return os.path.join(directory, FOLDER)


def new_id():
    return uuid.uuid4().hex


def is_id(file_id):
    """True if ``file_id`` has the shape of the ids :func:`new_id` makes.

    A content id comes from a record in the store, and the store may have
    been crafted: only an id of this shape is ever joined onto the folder,
    so no record can name a file elsewhere (``/home/me/.bashrc``, ``../x``).
    """
    return isinstance(file_id, str) and _ID.match(file_id) is not None


def written_here(content_folder, name):
    """True if the entry ``name`` of ``content_folder`` is of a kind ml_dash
    writes there: a content file or the temporary of one, by its name, and
    not a folder.  Anything else there is not ours to delete."""
    if _ID.match(name) is None and _TEMPORARY.match(name) is None:
        return False
    try:
        return not stat.S_ISDIR(os.lstat(os.path.join(content_folder, name)).st_mode)
    except FileNotFoundError:
        return False


def content_path(directory, file_id):
    """Where content ``file_id`` lives; ``StorageError`` for an id ml_dash never makes."""
    if not is_id(file_id):
        raise StorageError(f"{file_id!r} is not a content id ml_dash writes (32 hex digits); "
                           f"refusing to use it as a file name in {folder(directory)}")
    return os.path.join(directory, FOLDER, file_id)


def open_content(directory, file_id, label):
    """Content ``file_id`` opened for reading, never through a symbolic link.

    ``FileNotFoundError`` if it is missing; ``StorageError`` naming ``label``
    if it is a link (planted in a crafted run, it would make ml_dash read,
    copy out or hash a file outside the run folder) or not a regular file.
    """
    path = content_path(directory, file_id)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorageError(f"stored file {label}: its contents {path} are a symbolic link, "
                               "which ml_dash never follows") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"stored file {label}: its contents {path} are not a regular file")
    return os.fdopen(fd, "rb")


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


def write(directory, file_id, source):
    """Store ``source`` (bytes, an open binary file, or a local path) as content
    ``file_id``; ``(size, sha256)``."""
    root = folder(directory)
    os.makedirs(root, exist_ok=True)
    final = content_path(directory, file_id)
    temp = os.path.join(root, f".tmp-{file_id}")
    try:
        with open(temp, "w+b") as target:
            if isinstance(source, (bytes, bytearray, memoryview)):
                target.write(source)
                size, checksum = len(source), hashlib.sha256(source).hexdigest()
            elif hasattr(source, "readinto"):
                size, checksum = _copy(source, target)
            else:
                with open(source, "rb") as handle:
                    size, checksum = _copy(handle, target)
            target.flush()
            os.fsync(target.fileno())
        os.replace(temp, final)
        fsync_directory(root)
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
        with open_content(directory, file_id, label) as source, open(temp, "w+b") as target:
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
    with open_content(directory, file_id, label) as source:
        data = source.read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != checksum:
        raise StorageError(f"stored file {label} is damaged: its sha256 is {actual}, its record "
                           f"says {checksum}")
    return data


def remove(directory, file_id):
    """Delete content ``file_id`` if it is there.

    An id ml_dash never makes (from a crafted record) names no file of ours:
    nothing is deleted for it.
    """
    if not is_id(file_id):
        return
    try:
        os.unlink(content_path(directory, file_id))
    except FileNotFoundError:
        pass
