"""Reads from an experiment's store: short read transactions, never held.

Used by the live experiment (reading its own committed data) and by the
read-only views of ``ml_dash.load``.  Every call opens one read transaction,
takes what it needs and ends it before returning, so a reader never pins
pages the writer wants to reuse.
"""

import json

import numpy as np

from ..errors import CorruptStoreError
from ..names import TrackName, stream_label
from . import keys
from .catalog import Catalog
from .codec import PointDecoder, decode_value, stored_format
from .columns import DTYPE, ColumnMap, column_path
from .layout import check_no_link

_EMPTY = np.empty(0, dtype=DTYPE)
_EMPTY.flags.writeable = False


class StoreReader:
    def __init__(self, env, directory):
        self.env = env
        self.directory = directory
        self._catalog = Catalog()
        self._maps = {}
        self._seen = {}  # (stream, key) -> (column map, a committed count seen)
        version = self.env.read(lambda txn: self._get(txn, keys.META_DB, keys.FORMAT_KEY))
        self._points = PointDecoder(stored_format(version, directory))

    def _get(self, txn, db_name, key):
        db = self.env.db(db_name, txn)
        return None if db is None else txn.get(key, db=db)

    def _stream(self, txn, name, fresh=True):
        """``(entry, db, count)`` for stream ``name``; None if never written.

        ``fresh=False`` skips reloading the catalog when the stream is known
        already: streams and columns are only ever added, so its entry is
        still right, save for columns added since (callers that look up one
        column ask again with ``fresh=True`` when it is missing).
        """
        entry = None if fresh else self._catalog.by_name.get(name)
        if entry is None:
            self._catalog.refresh(txn, self.env)
            entry = self._catalog.by_name.get(name)
        if entry is None:
            return None
        db = self.env.db(entry.db_name, txn)
        if db is None:
            return None
        cursor = txn.cursor(db=db)
        if not cursor.last():
            return None
        return entry, db, keys.count_after(cursor.key())

    def count(self, name):
        found = self.env.read(lambda txn: self._stream(txn, name, fresh=False))
        return found[2] if found else 0

    def page(self, name, start, limit):
        """``(rows, has_more)``; rows are ``(index, created, ts, data)``."""
        def read(txn):
            found = self._stream(txn, name, fresh=False)
            if found is None or limit == 0 or start >= found[2]:
                return [], False
            _, db, count = found
            cursor = txn.cursor(db=db)
            cursor.set_key(keys.pack_index(start))
            rows = []
            decode = self._points.decode
            index = start
            try:
                # Indices are contiguous from 0, so the row's index is its position.
                for index, value in zip(range(start, min(count, start + limit)),
                                        cursor.iternext(keys=False)):
                    rows.append((index, *decode(value)))
            except CorruptStoreError as exc:
                raise self._damaged(name, index, exc) from None
            return rows, start + len(rows) < count
        return self.env.read(read)

    def rows_at(self, name, indices):
        """Rows ``(index, created, ts, data)`` at each of ``indices`` (in range), in one read."""
        def read(txn):
            # The indices come from a count seen before: no need to count again.
            entry = self._catalog.by_name.get(name)
            db = None if entry is None else self.env.db(entry.db_name, txn)
            if db is None:
                found = self._stream(txn, name)
                if found is None:
                    return []
                db = found[1]
            cursor = txn.cursor(db=db)
            decode = self._points.decode
            pack = keys.pack_index
            rows = []
            for index in indices:
                value = cursor.get(pack(index))
                if value is None:
                    raise self._damaged(name, index, "the row is missing")
                try:
                    rows.append((index, *decode(value)))
                except CorruptStoreError as exc:
                    raise self._damaged(name, index, exc) from None
            return rows
        return self.env.read(read)

    def ends(self, name):
        """``(entry, count, first point, last point)`` of a stream, or None."""
        def read(txn):
            found = self._stream(txn, name)
            if found is None:
                return None
            entry, db, count = found
            cursor = txn.cursor(db=db)
            decode = self._points.decode
            try:
                cursor.first()
                first = decode(cursor.value())
                cursor.last()
                return entry, count, first, decode(cursor.value())
            except CorruptStoreError as exc:
                raise self._damaged(name, keys.unpack_index(cursor.key()), exc) from None
        return self.env.read(read)

    def stream_names(self):
        """Names of every stream with at least one committed point (no tracks)."""
        def read(txn):
            self._catalog.refresh(txn, self.env)
            return [name for name in self._catalog.by_name
                    if type(name) is str and self._stream(txn, name)]
        return self.env.read(read)

    def track_names(self):
        """``TrackName`` of every track with at least one committed entry."""
        def read(txn):
            self._catalog.refresh(txn, self.env)
            return [name for name in self._catalog.by_name
                    if type(name) is TrackName and self._stream(txn, name)]
        return self.env.read(read)

    def summary(self):
        """``(snapshot id, experiment record, {stream: count}, {topic: count}, params,
        {stream: {key: last value}}, {stream: (stream id, {key: column id})})`` of one
        read transaction: what a listing shows, and where the columns are.

        The snapshot id is LMDB's transaction id of what was read: a later
        commit makes the newest one larger, which is how a summary saved
        from this is known to be stale.  A key's last value is the last of
        its column that is not NaN (a point without the key holds NaN):
        taken from the stream's last row, and from the column only for a
        key that row lacks, so a run's summary costs one row per stream.
        """
        def read(txn):
            value = self._get(txn, keys.META_DB, keys.EXPERIMENT_KEY)
            self._catalog.refresh(txn, self.env)
            counts, tracks, ends = {}, {}, {}
            for name in self._catalog.by_name:
                found = self._stream(txn, name)
                if found:
                    if type(name) is TrackName:
                        tracks[name.topic] = found[2]
                    else:
                        counts[name] = found[2]
                        row = txn.get(keys.pack_index(found[2] - 1), db=found[1])
                        ends[name] = found[0], found[2], row
            db = self.env.db(keys.PARAMS_DB, txn)
            params = [] if db is None else list(txn.cursor(db=db))
            return txn.id(), value, counts, tracks, params, ends
        snapshot, value, counts, tracks, params, ends = self.env.read(read)
        params = {key.decode("utf-8"): decode_value(data) for key, data in params}
        last: dict = {}
        for name, (entry, count, row) in ends.items():
            try:
                data = self._points.decode(row)[2] if row is not None else {}
            except CorruptStoreError as exc:
                raise self._damaged(name, count - 1, exc) from None
            values = last[name] = {}
            for key, cid in entry.columns.items():
                if key == "_ts":
                    continue
                found = _number_at(data, key)
                if found is None:  # not in the last point: the column knows its last value
                    found = _last_number(self._map(entry.sid, cid).view(count)[:count])
                if found is not None:
                    values[key] = found
        layout = {name: (entry.sid, dict(entry.columns)) for name, (entry, _, _) in ends.items()}
        return snapshot, experiment_record(value, self.directory), counts, tracks, params, last, layout

    def commit_times(self, name, start, stop):
        """Commit times of points ``[start, stop)`` as a float64 array (one row scan)."""
        def read(txn):
            found = self._stream(txn, name)
            if found is None:
                return _EMPTY
            count = found[2]
            end = count if stop is None else min(stop, count)
            if start >= end:
                return _EMPTY
            cursor = txn.cursor(db=found[1])
            cursor.set_key(keys.pack_index(start))
            values = cursor.iternext(keys=False)
            decode_created = self._points.decode_created
            try:
                return np.fromiter((decode_created(next(values)) for _ in range(end - start)),
                                   dtype=DTYPE, count=end - start)
            except CorruptStoreError as exc:
                raise self._damaged(name, keys.unpack_index(cursor.key()), exc) from None
        return self.env.read(read)

    def column_keys(self, name):
        found = self.env.read(lambda txn: self._stream(txn, name))
        return list(found[0].columns) if found else []

    def column(self, name, key, start, stop):
        """A read-only array of ``key`` for points ``[start, stop)``; None if no such column.

        ``columns()`` for one key, without its bookkeeping: a plotting or
        analysis loop may read single points this way thousands of times.
        Committed points never change, and a column's slots below the
        committed count were written before that commit, so a range below a
        count seen earlier is read from the memory map with no transaction.
        """
        seen = self._seen.get((name, key))
        if seen is not None and stop is not None and stop <= seen[1]:
            return seen[0].view(seen[1])[start:stop] if stop > start else _EMPTY
        found = self.env.read(lambda txn: self._stream(txn, name, fresh=False))
        if found is not None and key not in found[0].columns:
            found = self.env.read(lambda txn: self._stream(txn, name))  # a column added since?
        if found is None:
            return None
        entry, _, count = found
        cid = entry.columns.get(key)
        if cid is None:
            return None
        column = self._map(entry.sid, cid)
        values = column.view(count)
        self._seen[(name, key)] = (column, count)
        stop = count if stop is None else min(stop, count)
        return values[start:stop] if stop > start else _EMPTY

    def columns(self, name, wanted, start, stop):
        """``({key: read-only array of points [start, stop)}, unknown keys)``.

        ``wanted`` None means every column.
        """
        found = self.env.read(lambda txn: self._stream(txn, name))
        if found is None:
            return {}, list(wanted or ())
        entry, _, count = found
        stop = count if stop is None else min(stop, count)
        start = min(start, stop)
        wanted = list(entry.columns) if wanted is None else wanted
        out = {}
        for key in wanted:
            cid = entry.columns.get(key)
            if cid is not None:
                out[key] = self._map(entry.sid, cid).view(count)[start:stop] if stop > start else _EMPTY
        return out, [key for key in wanted if key not in entry.columns]

    def _map(self, sid, cid):
        column = self._maps.get((sid, cid))
        if column is None:
            path = column_path(self.directory, sid, cid)
            check_no_link(self.directory, path)  # never map a file outside the run folder
            column = self._maps[(sid, cid)] = ColumnMap(path)
        return column

    def _damaged(self, name, index, exc):
        return CorruptStoreError(f"{self.directory}: {stream_label(name)}, point {index}: {exc}; the store is "
                                 "damaged, ml_dash.check() reports what else is")

    def experiment(self):
        """The experiment record, checked (see :func:`experiment_record`)."""
        value = self.env.read(lambda txn: self._get(txn, keys.META_DB, keys.EXPERIMENT_KEY))
        return experiment_record(value, self.directory)

    def get_json(self, db_name, key, default=None):
        """A JSON record from sub-database ``db_name``, or ``default``."""
        value = self.env.read(lambda txn: self._get(txn, db_name, key))
        return json_record(value, key, self.directory, default)

    def get_value(self, db_name, key, default=None):
        """One record of ``db_name`` (see ``codec.encode_value``), or ``default``."""
        value = self.env.read(lambda txn: self._get(txn, db_name, key))
        return default if value is None else decode_value(value)

    def select(self, db_name, start=None, stop=None, limit=None):
        """Decoded ``(key, record)`` pairs with ``start <= key < stop``, in key order."""
        def read(txn):
            db = self.env.db(db_name, txn)
            if db is None:
                return []
            cursor = txn.cursor(db=db)
            if not (cursor.set_range(start) if start is not None else cursor.first()):
                return []
            out = []
            for key, value in cursor:
                if stop is not None and key >= stop:
                    break
                out.append((key, decode_value(value)))
                if limit is not None and len(out) >= limit:
                    break
            return out
        return self.env.read(read)

    def last_key(self, db_name):
        """The greatest key of ``db_name``, or None when it is empty or missing."""
        def read(txn):
            db = self.env.db(db_name, txn)
            if db is None:
                return None
            cursor = txn.cursor(db=db)
            return cursor.key() if cursor.last() else None
        return self.env.read(read)


def json_record(value, key, directory, default=None):
    """The stored JSON ``value`` of record ``key`` decoded, ``default`` when
    there is none; :class:`CorruptStoreError` when it is not JSON."""
    if not value:
        return default
    try:
        return json.loads(value)
    except ValueError:
        raise CorruptStoreError(f"{directory}: the {key.decode()} record is damaged "
                                f"(not JSON: {value[:60]!r})") from None
def _number_at(data, key):
    """The number a point's ``data`` holds for column ``key`` (``a.b``: nested), as its
    column holds it (a float), or None; NaN is None as in a column."""
    value = data.get(key, _NO_VALUE)
    if value is _NO_VALUE and "." in key:
        value = data
        for part in key.split("."):
            value = value.get(part, _NO_VALUE) if isinstance(value, dict) else _NO_VALUE
    if type(value) in (int, float, bool) and value == value:
        try:
            return float(value)
        except OverflowError:  # an int too large for a float: its column holds NaN
            return None
    return None


_NO_VALUE = object()


def _last_number(values, chunk=1024):
    """The last value of ``values`` that is not NaN, as a float, or None; reads
    backwards a chunk at a time, so a key logged every step costs one chunk."""
    stop = len(values)
    while stop > 0:
        part = values[max(0, stop - chunk):stop]
        found = np.flatnonzero(~np.isnan(part))
        if len(found):
            return float(part[found[-1]])
        stop -= chunk
        chunk *= 2
    return None


# The fields of an experiment record that listings and views compute with.
_TIME_FIELDS = ("createdAt", "startedAt", "endedAt")
MAX_TIME = 1e11  # seconds from 1970 either way: the year 5138; datetime stops at 9999


def experiment_record(value, directory):
    """The experiment record ``value`` (stored JSON, or None) as a dict.

    :class:`CorruptStoreError` when it is not a JSON object, a time is not a
    finite number or ``writer`` is not an object: no release writes those,
    and a damaged run must be reported as such rather than fail whatever
    formats it later.
    """
    if not value:
        return {}
    try:
        record = json.loads(value)
    except ValueError:
        record = None
    if type(record) is not dict:
        raise CorruptStoreError(f"{directory}: the experiment record is damaged (not a JSON object: "
                                f"{value[:60]!r})")
    for field in _TIME_FIELDS:
        got = record.get(field)
        if got is not None and (type(got) not in (int, float) or not abs(got) < MAX_TIME):
            raise CorruptStoreError(f"{directory}: the experiment record is damaged: {field!r} is "
                                    f"{type(got).__name__} {got!r:.60}, not a time")
    if type(record.get("writer", {})) is not dict:
        raise CorruptStoreError(f"{directory}: the experiment record is damaged: 'writer' is "
                                f"{type(record['writer']).__name__}, not an object")
    return record
