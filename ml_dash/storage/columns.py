"""Column files: one float64 array per (stream, numeric key), memory-mapped.

Columns are derived data: every value is also in the stream's LMDB rows, so
a column can always be rebuilt.  The file size means nothing to a reader; the
valid length is the stream's committed count, read from LMDB in the reader's
own transaction.  The writer fills a slot before the LMDB commit that makes
it visible, so a reader never sees a slot that is not yet written.

Files grow by doubling with ``posix_fallocate``: a sparse region made by
``ftruncate`` would turn a full disk into SIGBUS on first touch, while a
failed allocation is an ordinary ``OSError`` we can report.  Files are never
shrunk, because readers in other processes may have them mapped.

A mapped column holds no file descriptor: the file is opened, mapped and
closed again (see :class:`Mapping`), so neither the writer nor a reader
needs more descriptors for 2,000 columns than for one.  Python's own
``mmap.mmap`` keeps a duplicate of the descriptor for the mapping's life,
and one per column runs into the common limit of 1,024 open files.
"""

import ctypes
import mmap
import os

import numpy as np

from ..errors import StorageError
from . import faults
from .failures import os_failure

DTYPE = np.dtype("<f8")
ITEM = DTYPE.itemsize
# A new column file holds one page of slots and doubles as its stream grows:
# a run of 100 points costs 4 KB per column, not the 32 KB that 4,096 slots
# did (three of them were most of a small run's folder).  Growth remaps, and
# readers remap when a column outgrows their mapping (ColumnMap.view), so
# starting small costs a long run about three more remaps, nothing per point.
INITIAL_CAPACITY = 512
NAN = float("nan")

_libc = ctypes.CDLL(None, use_errno=True)
_libc_mmap = _libc.mmap
_libc_mmap.restype = ctypes.c_void_p
# The offset is always 0, so the width of off_t on this platform cannot matter.
_libc_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_ssize_t)
_libc_munmap = _libc.munmap
_libc_munmap.restype = ctypes.c_int
_libc_munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc_madvise = _libc.madvise
_libc_madvise.restype = ctypes.c_int
_libc_madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_MAP_FAILED = ctypes.c_void_p(-1).value


class Mapping:
    """One column file mapped whole with ``mmap(2)``, holding no descriptor.

    ``np.asarray(mapping)`` is a float64 array over the mapped bytes whose
    ``base`` is the mapping; slices of it and memoryviews of them keep that
    array, hence the mapping, alive.  The region is unmapped only when the
    last of them is gone, so an array handed out never points at unmapped
    memory, even after its view is closed or the column was remapped larger.

    Rejected: ``mmap.mmap`` (it keeps a duplicate descriptor open; its
    ``trackfd=False`` arrives with Python 3.13, and a second code path for
    newer Pythons would go untested on older ones), and closing a Python
    ``mmap`` by hand (it refuses while numpy still exports it, and numpy
    views the user holds must stay valid).
    """

    __slots__ = ("address", "length", "writable")

    def __init__(self, fd, length, writable):
        """Map ``length`` bytes of the open file ``fd``, shared; raises ``OSError``."""
        self.address = None
        self.length = length
        self.writable = writable
        prot = mmap.PROT_READ | mmap.PROT_WRITE if writable else mmap.PROT_READ
        address = _libc_mmap(None, length, prot, mmap.MAP_SHARED, fd, 0)
        if address is None or address == _MAP_FAILED:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self.address = address

    @property
    def __array_interface__(self):
        # Read-only mappings are exported read-only: numpy then refuses both
        # writes and turning the array writable, which would fault (SIGSEGV).
        return {"version": 3, "shape": (self.length // ITEM,), "typestr": DTYPE.str,
                "data": (self.address, not self.writable)}

    def __len__(self):
        return self.length

    def madvise(self, option, start, length):
        """``madvise(2)`` of bytes ``[start, start + length)``, as ``mmap.mmap.madvise``:
        downsampling hands the pages it has read back with ``MADV_DONTNEED``
        (they stay in the page cache), so a walk over a long column does not
        end with all of it mapped into the process."""
        if self.address is not None and _libc_madvise(self.address + start, length, option) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def __del__(self, unmap=_libc_munmap):
        # ``unmap`` is bound at definition: module globals may already be
        # gone when the last array is collected at interpreter exit.
        if self.address is not None:
            unmap(self.address, self.length)
            self.address = None


_EMPTY = np.empty(0, dtype=DTYPE)
_EMPTY.flags.writeable = False


def map_array(fd, slots, writable):
    """A float64 array of the first ``slots`` slots of the open file ``fd``.

    The array keeps its mapping alive; ``fd`` may be closed at once.
    """
    if slots == 0:  # mmap(2) refuses an empty region
        return np.empty(0, dtype=DTYPE) if writable else _EMPTY
    return np.asarray(Mapping(fd, slots * ITEM, writable))


def column_path(root, sid, cid):
    return os.path.join(root, "columns", str(sid), f"{cid}.f64")


def sync_column(path):
    """Flush a column file's written slots to disk.

    ``fsync`` of the file covers pages written through a shared mapping of it
    (on Linux ``msync`` ends in the same call) and, unlike ``mmap.flush``,
    releases the GIL while it waits, so logging goes on meanwhile.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO there: no wait forever
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise os_failure(f"cannot sync column file {path}", exc) from exc


class ColumnFile:
    """The writer's handle on one column file: a shared read-write mapping.

    ``values`` is a memoryview of float64 slots: the write path assigns slots
    one by one through it, half the cost of numpy item assignment (about
    30 ns against 50-250 ns).  ``array`` is the same memory as numpy.
    """

    def __init__(self, path, capacity, fresh):
        """Open (or, with ``fresh``, create anew) a column of ``capacity`` slots.

        A fresh column is filled with NaN: the points before the key first
        appeared lack it.  A file left by a snapshot that never committed is
        garbage and is replaced, which is safe because no reader maps a
        column the catalog does not list.
        """
        self.path = path
        self.capacity = 0
        self.array = None
        self.values = None
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as exc:  # its stream's folder is a file, or cannot be made
            raise os_failure(f"cannot create the folder of column file {path}", exc) from exc
        if fresh:
            self._remap(capacity, 0, os.O_TRUNC)
        else:
            size = self.size_of(path)
            self._remap(max(size, capacity), size)

    @staticmethod
    def size_of(path):
        """Slots in the column file at ``path`` (``FileNotFoundError`` if none)."""
        return os.stat(path).st_size // ITEM

    def grow(self, capacity):
        """Make room for ``capacity`` slots; the new slots get NaN."""
        self._remap(capacity, self.capacity)

    def _remap(self, capacity, fill_from, open_flags=0):
        """Allocate and map ``capacity`` slots; slots from ``fill_from`` on get NaN.

        The previous mapping is not unmapped here: the writer's slot cache
        or a reader in this process may still hold views of it; it goes with
        the last of them.  Its slots are the same pages of the same file, so
        such a view keeps seeing every value written.
        """
        length = capacity * ITEM
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | open_flags, 0o644)
            try:
                if length > os.fstat(fd).st_size:
                    if faults.ACTIVE:
                        faults.hit("column_growth", self.path)
                    os.posix_fallocate(fd, 0, length)
                array = map_array(fd, capacity, writable=True)
            finally:
                os.close(fd)
        except OSError as exc:
            raise os_failure(f"cannot grow column file {self.path} to {length} bytes", exc) from exc
        array[fill_from:capacity] = NAN
        self.array = array
        self.values = memoryview(array)
        self.capacity = capacity

    def sync(self):
        """Flush the written slots to disk."""
        sync_column(self.path)

    def close(self):
        self.values = None
        self.array = None


class ColumnMap:
    """A reader's read-only mapping of one column file, remapped as it grows."""

    def __init__(self, path):
        self.path = path
        self._array = None

    def view(self, count):
        """A read-only array of at least ``count`` slots (a view, no copy)."""
        if self._array is None or len(self._array) < count:
            try:
                # O_NONBLOCK: a FIFO put in its place would block the open forever
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
                try:
                    array = map_array(fd, os.fstat(fd).st_size // ITEM, writable=False)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise os_failure(f"cannot map column file {self.path}", exc,
                                 "; ml_dash.check(..., repair=True) rebuilds it") from exc
            if len(array) < count:
                raise StorageError(
                    f"column file {self.path} holds {len(array)} values, "
                    f"fewer than the {count} committed points; run ml_dash.check(..., repair=True)")
            self._array = array
        return self._array
