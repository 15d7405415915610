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
"""

import mmap
import os

import numpy as np

from ..errors import StorageError
from . import faults

DTYPE = np.dtype("<f8")
ITEM = DTYPE.itemsize
INITIAL_CAPACITY = 4096
NAN = float("nan")


def column_path(root, sid, cid):
    return os.path.join(root, "columns", str(sid), f"{cid}.f64")


def sync_column(path):
    """Flush a column file's written slots to disk.

    ``fsync`` of the file covers pages written through a shared mapping of it
    (on Linux ``msync`` ends in the same call) and, unlike ``mmap.flush``,
    releases the GIL while it waits, so logging goes on meanwhile.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ColumnFile:
    """The writer's handle on one column file.

    It keeps only the mapping open (Python's mmap holds its own descriptor),
    so that an experiment with thousands of columns stays far from the
    process's file-descriptor limit.
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
        self.values = None
        self._mmap = None
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if fresh:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644))
            self.grow(capacity)
        else:
            size = self.size_of(path)
            self.grow(max(size, capacity), fill_from=size)

    @staticmethod
    def size_of(path):
        """Slots in the column file at ``path`` (``FileNotFoundError`` if none)."""
        return os.stat(path).st_size // ITEM

    def grow(self, capacity, fill_from=None):
        """Make room for ``capacity`` slots; slots past ``fill_from`` get NaN."""
        old = self.capacity if fill_from is None else fill_from
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if capacity * ITEM > os.fstat(fd).st_size:
                if faults.ACTIVE:
                    faults.hit("column_growth", self.path)
                os.posix_fallocate(fd, 0, capacity * ITEM)
            # An old mapping may still be exported to numpy views held by the
            # user; it is left to the garbage collector instead of closed.
            self._mmap = mmap.mmap(fd, capacity * ITEM, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            raise StorageError(
                f"cannot grow column file {self.path} to {capacity * ITEM} bytes: "
                f"{exc.strerror or exc}") from exc
        finally:
            os.close(fd)
        # Slots are written one by one through a memoryview: half the cost of
        # numpy item assignment (about 30 ns against 50-250 ns).
        self.values = memoryview(self._mmap).cast("d")
        self.capacity = capacity
        if old < capacity:
            np.frombuffer(self._mmap, dtype=DTYPE)[old:capacity] = NAN

    def sync(self):
        """Flush the written slots to disk."""
        sync_column(self.path)

    def close(self):
        self.values = None
        self._mmap = None


class ColumnMap:
    """A reader's read-only mapping of one column file, remapped as it grows."""

    def __init__(self, path):
        self.path = path
        self._array = None

    def view(self, count):
        """A read-only array of at least ``count`` slots (a view, no copy)."""
        if self._array is None or len(self._array) < count:
            try:
                with open(self.path, "rb") as f:
                    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise StorageError(f"cannot map column file {self.path}: {exc}; "
                                   "ml_dash.check(..., repair=True) rebuilds it") from exc
            self._array = np.frombuffer(mm, dtype=DTYPE)
            if len(self._array) < count:
                raise StorageError(
                    f"column file {self.path} holds {len(self._array)} values, "
                    f"fewer than the {count} committed points; run ml_dash.check(..., repair=True)")
        return self._array
