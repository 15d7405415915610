"""Column slots: which fields of a point become columns, and writing their values.

The column rule, shared by the writer and the checker: every int, float and
bool of a point is a float64 column (nested dicts as ``a.b`` keys, see
:func:`numeric_leaves`), plus ``_ts``; a slot of a column the point lacks is
NaN.  Files grow by doubling (:func:`capacity_for`).  Slots are written
before the LMDB commit that makes them valid (see ``writer.py``).
"""

from . import keys
from .catalog import TS_KEY
from .columns import INITIAL_CAPACITY, NAN, ColumnFile, column_path


class StreamState:
    """What the writer keeps per stream: point count and open columns."""

    __slots__ = ("entry", "count", "files", "capacity", "db", "synced", "layout", "ts_values",
                 "last_ts")

    def __init__(self, entry, count=0):
        self.entry = entry
        # Points committed, plus those of the snapshot being committed: the
        # index of the next point.  A failed commit sets it back.
        self.count = count
        self.files = {}  # column key -> ColumnFile
        self.capacity = 0
        self.db = None  # sub-database handle once its creation committed
        self.synced = count
        # {field: column array} when the last point filled every column (and
        # ts_values the _ts column): the next point with the same fields
        # writes its slots without any other lookup.  Reset when columns change.
        self.layout = None
        self.ts_values = None
        # A track's last committed _ts (None while it has no entry): an entry
        # with the same _ts is merged into that one, an older one refused.
        self.last_ts = None


class ColumnSlots:
    """Writes the column slots of the streams of one writer; new columns are
    registered in ``pending_catalog`` (committed with the next snapshot)."""

    def __init__(self, directory, pending_catalog):
        self.directory = directory
        self.pending_catalog = pending_catalog

    def open(self, state, txn, watermark, decode):
        """Map a stream's column files and rebuild what a crash may have lost."""
        state.capacity = capacity_for(state.count)
        for key, cid in state.entry.columns.items():
            path = column_path(self.directory, state.entry.sid, cid)
            try:
                existing = ColumnFile.size_of(path)
            except (FileNotFoundError, NotADirectoryError):  # the latter: its folder is a file
                existing = 0
            if existing < state.count:
                watermark = 0  # a lost or truncated file: rebuild it whole
            state.files[key] = ColumnFile(path, state.capacity, fresh=existing == 0)
        if watermark < state.count:
            cursor = txn.cursor(db=state.db)
            cursor.set_range(keys.pack_index(watermark))
            for key, value in cursor:
                _, ts, data = decode(value)
                self.write(state, keys.unpack_index(key), ts, data)
        # Slots rebuilt here are in the page cache only: the next sync
        # flushes them and only then records them in the watermark.
        state.synced = min(watermark, state.count)

    def new_column(self, state, key):
        entry = state.entry
        name = key.encode("utf-8")  # may fail (a lone surrogate): before anything changes
        cid = len(entry.columns)
        # The file first: if it cannot be made (disk full) the column is not
        # registered, and the retried snapshot creates it again under this id.
        column = state.files[key] = ColumnFile(
            column_path(self.directory, entry.sid, cid), state.capacity, fresh=True)
        entry.columns[key] = cid
        self.pending_catalog.append((keys.column_key(entry.sid, cid), name))
        state.layout = None
        return column

    def write(self, state, index, ts, data):
        """Write slot ``index`` of every column of the stream (NaN if absent)."""
        if index >= state.capacity:
            self.grow(state, index + 1)
        files = state.files
        files[TS_KEY].values[index] = ts
        written = 1
        nested = False
        for key, value in data.items():
            kind = type(value)
            if kind is float or kind is int or kind is bool:
                column = files.get(key) or self.new_column(state, key)
                assign(column.values, index, value)
                written += 1
            elif kind is dict:
                nested = True
        if nested or written != len(files):
            self._write_sparse(state, index, data)
        elif written == len(data) + 1:
            state.layout = {key: files[key].values for key in data}
            state.ts_values = files[TS_KEY].values

    def _write_sparse(self, state, index, data):
        present = {TS_KEY}
        for key, value in numeric_leaves(data):
            column = state.files.get(key) or self.new_column(state, key)
            assign(column.values, index, value)
            present.add(key)
        for key, column in state.files.items():
            if key not in present:
                column.values[index] = NAN

    def grow(self, state, needed):
        capacity = capacity_for(needed)
        for column in state.files.values():
            if column.capacity < capacity:
                column.grow(capacity)
        state.capacity = capacity
        state.layout = None


def capacity_for(count):
    capacity = INITIAL_CAPACITY
    while capacity < count:
        capacity *= 2
    return capacity


def assign(values, index, number):
    try:
        values[index] = number
    except (OverflowError, ValueError):  # an int beyond float64's range (memoryview says ValueError)
        values[index] = float("inf") if number > 0 else float("-inf")


def numeric_leaves(data, prefix=""):
    """``(key, number)`` for every int, float and bool, nested keys as ``a.b``."""
    for key, value in data.items():
        kind = type(value)
        if kind is float or kind is int or kind is bool:
            yield prefix + key, value
        elif kind is dict:
            yield from numeric_leaves(value, f"{prefix}{key}.")
