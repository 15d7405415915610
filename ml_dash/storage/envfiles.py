"""The files of an LMDB environment, checked and prepared before LMDB maps them.

LMDB trusts its files: it maps ``data.mdb`` as far as its newest meta page
says pages exist, and it sizes a new ``lock.mdb`` with ``ftruncate`` and
then writes through a shared map of it.  A truncated data file (an
interrupted copy) and a sparse lock file on a full disk both end in
``SIGBUS``, which kills the process instead of raising.  So before every
``lmdb.open``:

* :func:`check_data_file` reads the two meta pages itself and requires the
  file to hold every page the newest one counts, raising
  :class:`CorruptStoreError` otherwise;
* :func:`prepare_lock_file` creates ``lock.mdb`` fully allocated with
  ``posix_fallocate`` (as column files are), so a full disk is an
  ``OSError`` here instead of a signal later;
* :func:`map_size_for` opens the map at least twice the file's size: a
  compacted file can be larger than the initial map, and a writer whose map
  holds no free page cannot even start the transaction that would grow it.
"""

import errno
import os
import struct

from ..errors import CorruptStoreError, StorageError

DATA_FILE = "data.mdb"
LOCK_FILE = "lock.mdb"

# LMDB 0.9 on a 64-bit machine (py-lmdb bundles it): a page starts with a
# 16-byte header (flags at offset 10); a meta page's body is magic, version,
# address, map size, two 48-byte database records (the first one's leading
# 4 bytes hold the page size), the last page number and the transaction id.
_P_META = 0x08
_MAGIC = 0xBEEFC0DE
_DATA_VERSION = 1
_META = struct.Struct("=H4xIIQQI92xQQ")  # flags, magic, version, address, map size, psize, last page, txnid
_META_OFFSET = 10
_META_BYTES = _META_OFFSET + _META.size
_COMMON_PAGE = 4096  # LMDB's page is the OS page: one read then holds both meta pages

# The lock file LMDB needs: a 192-byte header and 64 bytes per reader slot
# beyond the first (measured with py-lmdb 3.0: max_readers=1024 gives 65,664).
_LOCK_HEADER = 192
_READER_SLOT = 64


def lock_file_size(max_readers):
    return _LOCK_HEADER + (max_readers - 1) * _READER_SLOT


def check_data_file(directory):
    """The size of ``data.mdb`` (0 if absent), after checking that LMDB can map it.

    Mirrors LMDB's own reading of the header: both meta pages must be meta
    pages of this format, and the newest (by transaction id) names the last
    page in use, which the file must hold.
    """
    path = os.path.join(directory, DATA_FILE)
    for _ in range(2):  # a meta page written while we read it: read again
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    return 0  # a store LMDB is about to create
                first = f.read(_META_BYTES)
                if len(first) < _META_BYTES:
                    raise CorruptStoreError(f"{path} is damaged: {size} bytes, shorter than LMDB's header")
                page_size = _META.unpack_from(first, _META_OFFSET)[5]
                if page_size < 512 or page_size & (page_size - 1) or page_size > 1 << 16:
                    raise CorruptStoreError(f"{path} is damaged: its header gives page size {page_size}")
                f.seek(page_size)
                second = f.read(_META_BYTES)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        newest: tuple[int, int] | None = None
        for number, page in enumerate((first, second)):
            if len(page) < _META_BYTES:
                raise CorruptStoreError(
                    f"{path} is truncated: {size} bytes, less than its two meta pages of {page_size}")
            flags, magic, version, _, _, _, last_page, txnid = _META.unpack_from(page, _META_OFFSET)
            if not flags & _P_META or magic != _MAGIC:
                raise CorruptStoreError(f"{path} is damaged: meta page {number} is not an LMDB meta page")
            if version != _DATA_VERSION:
                raise CorruptStoreError(f"{path}: meta page {number} has LMDB data version {version}")
            if newest is None or txnid > newest[1]:
                newest = (last_page, txnid)
        assert newest is not None  # both meta pages were read, or an error raised
        needed = (newest[0] + 1) * page_size
        if size >= needed:
            return size
    assert newest is not None
    raise CorruptStoreError(
        f"{path} is truncated: {size} bytes, but its last transaction uses {needed} "
        f"(pages 0 to {newest[0]} of {page_size} bytes); an interrupted copy? Copy the run again")


def newest_snapshot(directory):
    """``(device, inode, transaction id)`` of the newest commit in ``data.mdb``, or None.

    Reads the two meta pages (no LMDB environment is opened): any commit
    raises the id, and a file put in its place (a compaction) has another
    inode.  None when the file is missing, its header is not LMDB's, it is
    shorter than its newest commit needs (see :func:`check_data_file`) or
    ``lock.mdb`` is missing: opening the store would then fail or have to
    repair something, which only the slow way reports.
    """
    # os.open and pread: a listing calls this once per run, and Python's buffered
    # file object cost more than the two reads.
    try:
        fd = os.open(os.path.join(directory, DATA_FILE), os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        head = os.pread(fd, _COMMON_PAGE + _META_BYTES, 0)  # both meta pages of the usual size
        if len(head) < _META_BYTES:
            return None
        first = head[:_META_BYTES]
        page_size = _META.unpack_from(first, _META_OFFSET)[5]
        if page_size < 512 or page_size & (page_size - 1) or page_size > 1 << 16:
            return None
        if page_size == _COMMON_PAGE:
            second = head[page_size:]
        else:
            second = os.pread(fd, _META_BYTES, page_size)
    except OSError:
        return None
    finally:
        os.close(fd)
    newest = (-1, -1)
    for page in (first, second):
        if len(page) < _META_BYTES:
            return None
        flags, magic, _, _, _, _, last_page, txnid = _META.unpack_from(page, _META_OFFSET)
        if not flags & _P_META or magic != _MAGIC:
            return None
        newest = max(newest, (txnid, last_page))
    if st.st_size < (newest[1] + 1) * page_size or not os.path.exists(os.path.join(directory, LOCK_FILE)):
        return None
    return st.st_dev, st.st_ino, newest[0]


def data_file_identity(directory):
    """``(device, inode)`` of ``data.mdb``, or None: which file the name means now."""
    try:
        st = os.stat(os.path.join(directory, DATA_FILE))
    except OSError:
        return None
    return st.st_dev, st.st_ino


def prepare_lock_file(directory, max_readers):
    """Make sure ``lock.mdb`` exists with all its blocks allocated on disk.

    A new one is built under a temporary name and linked into place, so no
    process ever sees it half-sized; an existing sparse one (left by LMDB
    itself) is allocated in place, which changes none of its bytes.  Where
    the folder is read-only nothing is done: LMDB then decides.
    """
    path = os.path.join(directory, LOCK_FILE)
    needed = lock_file_size(max_readers)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError:
        return
    try:
        if st is None:
            temporary = f"{path}.{os.getpid()}.new"
            fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                try:
                    os.posix_fallocate(fd, 0, needed)
                finally:
                    os.close(fd)
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process made it first
            finally:
                os.unlink(temporary)
        elif st.st_blocks * 512 < min(st.st_size, needed) or st.st_size < needed:
            fd = os.open(path, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, max(st.st_size, needed))
            finally:
                os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return
        raise StorageError(f"cannot create the lock file {path} ({needed} bytes): "
                           f"{exc.strerror or exc}") from exc


def map_size_for(file_size, initial):
    """The map to open a data file of ``file_size`` bytes with: ``initial``
    doubled until it is at least twice the file (room for the writer)."""
    size = initial
    while size < 2 * file_size:
        size *= 2
    return size
