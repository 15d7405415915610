"""The one write path: every LMDB write transaction of ml_dash starts here.

A snapshot (everything staged since the last flush, across streams, plus any
records such as the experiment's status) is committed as exactly one write
transaction, so a reader sees all of it or none of it.

Order inside a commit, and why:

1. begin the write transaction and check, inside it, that this writer still
   owns the store: the ``writer`` record in ``meta`` must be the one it
   stored when it opened.  Another writer can only have got in when
   ``writer.lock`` was deleted under a live one; it then stored its own
   record, and this writer refuses before it writes anything (see
   ``owner.py``).  LMDB lets one write transaction run at a time, so no
   other writer commits between the check and our commit.
2. encode every point and write its column slots, growing column files if
   needed.  Column slots are written *before* the LMDB commit: a reader takes
   the valid length of a column from the committed row count, so a slot is
   never visible before its value is there.  A commit that then fails leaves
   values past the committed count, which mean nothing and are overwritten
   by the next snapshot (every slot of every column of a point is written,
   NaN where the point lacks the key).  (Rejected: writing the slots before
   the transaction begins, as it once was: a writer that lost the store
   then writes over slots the other one has committed.)
3. new catalog items, the rows (appended), extra records; commit.
   ``MapFullError`` aborts it, doubles the map and retries the snapshot
   (its column slots are already written).

Durability: commits use ``sync=False``, so a committed snapshot survives a
killed process at once, and a background thread fsyncs every
``sync_interval`` seconds while there is unsynced data (at most about that
much is lost if the machine itself goes down).  ``sync_interval=0`` fsyncs
after every commit.  The same thread fsyncs the column files and records in
``meta`` the count of points whose column values are known to be on disk
(the watermark); after an unclean shutdown the columns are rebuilt from the
rows past it.
"""

import json
import os
import threading
import time
import warnings

import lmdb

from ..errors import StorageError, StreamLimitError
from . import faults, keys
from .catalog import ROOT, TS_KEY, Catalog, StreamEntry
from .codec import FORMAT_VERSION, PointDecoder, PointEncoder, stored_format
from .columns import INITIAL_CAPACITY, NAN, ColumnFile, column_path, sync_column
from .env import MAX_DBS
from .lock import WriterLock
from .owner import check_ownership, owner_record, take_ownership

MAX_MAP_SIZE = 1 << 40
# Named streams per experiment, besides the root stream: every stream is an
# LMDB sub-database, and the rest of MAX_DBS is kept for the root, meta,
# catalog, params, logs, files and later ones.
MAX_STREAMS = MAX_DBS - 24
READER_CHECK_EVERY = 10  # syncs
BATCHED_ROWS = 16  # a snapshot of this many rows or more is put with one putmulti per stream


class _StreamState:
    """What the writer keeps per stream: point count and open columns."""

    __slots__ = ("entry", "count", "files", "capacity", "db", "synced", "layout", "ts_values")

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


class Writer:
    """Owns an experiment's store for writing; one per experiment per process."""

    def __init__(self, env, directory, sync_interval=1.0, lock_timeout=0.0):
        self.env = env
        self.directory = directory
        self.sync_interval = float(sync_interval)
        # The environment's write lock, which handle opening takes too: every
        # write transaction of the process holds it (see env.py), at the cost
        # of one lock per flush, as before.
        self._lock = env.write_lock
        self._writer_lock = WriterLock(directory, timeout=lock_timeout)
        self._owner = owner_record(self._writer_lock)  # stored at open, checked by every commit
        self._last_txn_id = -1  # of this writer's last commit: see _check_owner
        # Snapshots committed by commit(): a caller interrupted (KeyboardInterrupt)
        # just as commit() returns tells by this whether its snapshot is stored.
        self.snapshots = 0
        self._encoder = PointEncoder()
        self._catalog = Catalog()
        self._streams = {}
        self._pending_catalog = []  # catalog items not yet committed
        self._dirty = False
        self._closed = False
        try:
            with self._lock:
                self._open_store()
        except BaseException:
            self._writer_lock.release()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._sync_loop, name=f"ml_dash sync {directory}", daemon=True)
        self._thread.start()

    # -- opening ---------------------------------------------------------------

    def _open_store(self):
        env = self.env.lmdb
        env.reader_check()
        try:
            self._load_store(env)
        except BaseException:
            self.env.aborted()
            raise
        self._write_watermark(self._marks())

    def _load_store(self, env):
        with env.begin(write=True) as txn:
            txn_id = txn.id()
            meta = self.env.db(keys.META_DB, txn, create=True)
            self.env.db(keys.CATALOG_DB, txn, create=True)
            stored = txn.get(keys.FORMAT_KEY, db=meta)
            if stored is None:
                txn.put(keys.FORMAT_KEY, str(FORMAT_VERSION).encode(), db=meta)
            # An older store is appended to in its own format: one store, one point encoding.
            version = stored_format(stored, self.directory)
            self._encoder = PointEncoder(version)
            self._decode = PointDecoder(version).decode
            take_ownership(txn, meta, self._owner, self._writer_lock, self.directory)
            self._catalog.refresh(txn, self.env)
            watermark = _watermark(txn.get(keys.WATERMARK_KEY, b"{}", db=meta))
            for entry in self._catalog.by_id.values():
                db = self.env.db(entry.db_name, txn, create=True)
                state = _StreamState(entry, _count(txn, db))
                state.db = db
                self._streams[entry.name] = state
                mark = watermark.get(str(entry.sid), 0)
                # derived data: a damaged mark costs a rebuild from the rows, not the run
                self._open_columns(state, txn, mark if type(mark) is int and mark >= 0 else 0)
        self._last_txn_id = txn_id
        self.env.committed()

    def _open_columns(self, state, txn, watermark):
        """Map a stream's column files and rebuild what a crash may have lost."""
        state.capacity = _capacity_for(state.count)
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
                _, ts, data = self._decode(value)
                self._write_slots(state, keys.unpack_index(key), ts, data)
        state.synced = state.count

    # -- the write path ----------------------------------------------------------

    def commit(self, points, records=()):
        """Commit ``points`` and ``records`` as one transaction.

        ``points``: ``(stream, data, ts)`` tuples in logging order, where
        ``stream`` has ``.store_name`` (``""`` for the root) and ``.info``
        (the stream's description, tags and metadata).  ``records``:
        ``(db_name, key, value)`` puts, or deletes where ``value`` is None.
        On failure nothing is committed and the caller keeps the snapshot.
        """
        with self._lock:
            if self._closed:
                raise StorageError(f"the store at {self.directory} is closed")
            if faults.ACTIVE:
                faults.hit("before_columns")
            try:
                self._transact(points, records, time.time())
            except BaseException as exc:
                if getattr(exc, "committed", False):
                    self._dirty = True
                raise
            if faults.ACTIVE:
                faults.hit("after_commit")
            self._dirty = True
            if self.sync_interval == 0:
                try:
                    self._sync_locked(full=False)
                except StorageError as exc:
                    exc.committed = True  # readers see it already: retrying would store it twice
                    raise

    def _stage_points(self, points, created):
        """Encode points into ``(stream state, key, value)`` rows and fill their column slots.

        Advances each stream's count past its new points.  This and
        ``Stream.log`` are the hot path of a training loop, hence the flat,
        inlined code.
        """
        encoder = self._encoder
        pack, checksum, pack_sum = encoder.pack, encoder.checksum, encoder.pack_sum
        pack_index = keys.pack_index
        streams = self._streams
        rows = []
        append = rows.append
        try:
            for stream, data, ts in points:
                state = streams.get(stream.store_name) or self._new_stream(stream, created)
                index = state.count
                value = pack((created, ts, data))
                if checksum is not None:  # PointEncoder.encode, inline
                    value += pack_sum(checksum(value))
                append((state, pack_index(index), value))
                state.count = index + 1
                # A point with the same fields as the last one of its stream
                # writes its column slots without any other lookup; anything
                # else (a new key, a string, a nested dict) takes the full path.
                layout = state.layout
                if layout is not None and index < state.capacity and len(data) == len(layout):
                    try:
                        for key, number in data.items():
                            layout[key][index] = number
                        state.ts_values[index] = ts
                        continue
                    except (KeyError, TypeError, OverflowError, ValueError):
                        pass
                self._write_slots(state, index, ts, data)
        except BaseException as exc:
            _rewind(rows)
            if isinstance(exc, StreamLimitError):
                # Only this stream's points are refused; the rest can still be committed.
                exc.rejected = tuple(p for p in points if p[0].store_name == stream.store_name)
                raise
            if isinstance(exc, (TypeError, ValueError, OverflowError)) and not isinstance(exc, StorageError):
                # A value log() let through but the encoder refuses (a str with a
                # lone surrogate): name it, and let the caller drop just this point.
                error = TypeError(
                    f"{_label(stream.store_name)}: cannot store the point {_short(data)}: "
                    f"{_culprit(data, pack)}{exc}; the point was dropped")
                error.rejected = tuple(p for p in points if p[1] is data)
                raise error from exc
            raise
        return rows

    def _transact(self, points, records, created):
        """Check ownership, write the column slots, put the rows and records, commit.

        On failure nothing is committed and every stream's count is set back.
        An exception that arrives once the commit is done (a signal handler
        raising ``KeyboardInterrupt`` as the commit returns) is re-raised with
        ``committed = True``, so that the caller does not store it twice.
        """
        rows = None
        while True:
            txn = self.env.lmdb.begin(None, None, True)  # write=True, positional: see _put_all
            txn_id = txn.id()
            created_dbs = []
            try:
                if txn_id != self._last_txn_id + 1:  # inline _check_owner: the hot path
                    self._check_owner(txn, txn_id)
                if rows is None:
                    rows = self._stage_points(points, created)
                self._put_all(txn, rows, records, created_dbs)
                if faults.ACTIVE:
                    faults.hit("before_commit", self.directory)
                txn.commit()
                self.snapshots += 1
                self._last_txn_id = txn_id
            except lmdb.MapFullError:
                self._forget(created_dbs)
                try:
                    self._grow_map(txn)
                except BaseException:
                    if rows is not None:
                        _rewind(rows)
                    raise
                continue
            except BaseException as exc:
                if self._did_commit(txn_id):
                    if self._last_txn_id != txn_id:
                        self.snapshots += 1
                    self._last_txn_id = txn_id
                    self._committed()
                    exc.committed = True
                    raise
                self._abort(txn)
                self._forget(created_dbs)
                if rows is not None:
                    _rewind(rows)
                if isinstance(exc, (lmdb.Error, OSError)) and not isinstance(exc, StorageError):
                    raise StorageError(f"cannot commit to the store at {self.directory}: "
                                       f"{exc}{_full_disk_note(self.directory)}") from exc
                raise
            self._committed()
            return

    def _check_owner(self, txn, txn_id):
        """Refuse to write in ``txn`` unless this writer still owns the store.

        When ``txn`` directly follows this writer's last commit nobody else
        has written in between (LMDB numbers commits one by one), and so
        nobody has replaced our record: that costs one comparison per flush.
        Only otherwise is the record read (about 0.2 us more).
        """
        if txn_id != self._last_txn_id + 1:
            check_ownership(txn, self.env.db(keys.META_DB, txn), self._owner, self.directory)

    def _committed(self):
        if self._pending_catalog:
            self._pending_catalog.clear()
        self.env.committed()

    def _did_commit(self, txn_id):
        """Whether write transaction ``txn_id`` committed (asked while it may still be open).

        No other writer can commit while ours is open, so the store's last
        transaction id reaches ours only through our own commit.
        """
        try:
            return self.env.lmdb.info()["last_txnid"] >= txn_id
        except lmdb.Error:
            return False

    def _put_all(self, txn, rows, records, created_dbs):
        if self._pending_catalog:
            catalog = self.env.db(keys.CATALOG_DB, txn)
            for key, value in self._pending_catalog:
                txn.put(key, value, db=catalog)
            meta = self.env.db(keys.META_DB, txn)
            version = int(txn.get(keys.CATALOG_VERSION_KEY, b"0", db=meta)) + 1
            txn.put(keys.CATALOG_VERSION_KEY, b"%d" % version, db=meta)
        if len(rows) < BATCHED_ROWS:
            # put(key, value, dupdata, overwrite, append, db): py-lmdb parses
            # positional arguments about 130 ns faster than keywords, per row.
            put = txn.put
            for state, key, value in rows:
                if not put(key, value, True, True, True,
                           state.db or self._create_db(state, txn, created_dbs)):
                    self._refuse_index(state, key)
        else:
            # Many rows: one putmulti per stream, about half the cost per row of
            # a put each, grouping included.  For a few rows the cursor of each
            # stream would cost more than it saves.
            batches = {}
            for state, key, value in rows:
                batch = batches.get(state)
                if batch is None:
                    batch = batches[state] = []
                batch.append((key, value))
            for state, batch in batches.items():
                cursor = txn.cursor(state.db or self._create_db(state, txn, created_dbs))
                if cursor.putmulti(batch, append=True)[1] != len(batch):
                    self._refuse_index(state, batch[0][0])
        for db_name, key, value in records:
            db = self.env.db(db_name, txn, create=True)
            if value is None:
                txn.delete(key, db=db)
            else:
                txn.put(key, value, db=db)

    def _create_db(self, state, txn, created_dbs):
        state.db = self.env.db(state.entry.db_name, txn, create=True)
        created_dbs.append(state)
        return state.db

    def _refuse_index(self, state, key):
        """MDB_APPEND refused a key that is not past the last one stored."""
        raise StorageError(
            f"{_label(state.entry.name)} in {self.directory}: point index "
            f"{keys.unpack_index(key)} is not past the last stored index; another "
            "process may have written this experiment")

    def _forget(self, created):
        self.env.aborted()
        for state in created:
            state.db = None

    def _abort(self, txn):
        """Abort a write transaction; reads of other threads would delay it (see MapGuard)."""
        self.env.map_guard.alone(txn.abort)

    def _grow_map(self, txn):
        """Abort ``txn``, which ran out of map, and double the map."""
        def abort_and_grow():
            txn.abort()
            size = self.env.lmdb.info()["map_size"]
            if size >= MAX_MAP_SIZE:
                raise StorageError(f"the store at {self.directory} reached its size limit of {size} bytes")
            if faults.ACTIVE:
                faults.hit("map_growth", self.directory)
            self.env.lmdb.set_mapsize(min(size * 2, MAX_MAP_SIZE))
        try:
            self.env.map_guard.alone(abort_and_grow)
        except (lmdb.Error, OSError) as exc:
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"cannot grow the map of the store at {self.directory}: {exc}") from exc

    # -- streams and columns ------------------------------------------------------

    def _new_stream(self, stream, created):
        # The root stream is not counted: it always has its place (metrics.py
        # counts new streams at the call against the same limit).
        if stream.store_name != ROOT and len(self._streams) - (ROOT in self._streams) >= MAX_STREAMS:
            raise StreamLimitError(
                f"cannot create {_label(stream.store_name)} in {self.directory}: an experiment "
                f"holds at most {MAX_STREAMS} named streams; its points were dropped, the rest of "
                "the snapshot stays staged (log such values as keys of fewer streams)")
        entry = StreamEntry(self._catalog.next_sid(), stream.store_name,
                            dict(stream.info, createdAt=created))
        # Encoded first: a record that cannot be encoded must change nothing
        # (it used to leave the stream's column staged without its record).
        item = self._catalog.encode_stream(entry)
        state = _StreamState(entry)
        state.capacity = INITIAL_CAPACITY
        self._new_column(state, TS_KEY)  # may fail (disk full): then nothing is registered
        self._catalog.add(entry)
        self._pending_catalog.append(item)
        self._streams[stream.store_name] = state
        return state

    def stream_names(self):
        """Names of the named streams this writer knows: stored, or created by
        a snapshot not committed yet."""
        with self._lock:
            return [name for name in self._streams if name != ROOT]

    def _new_column(self, state, key):
        entry = state.entry
        name = key.encode("utf-8")  # may fail (a lone surrogate): before anything changes
        cid = len(entry.columns)
        # The file first: if it cannot be made (disk full) the column is not
        # registered, and the retried snapshot creates it again under this id.
        column = state.files[key] = ColumnFile(
            column_path(self.directory, entry.sid, cid), state.capacity, fresh=True)
        entry.columns[key] = cid
        self._pending_catalog.append((keys.column_key(entry.sid, cid), name))
        state.layout = None
        return column

    def _write_slots(self, state, index, ts, data):
        """Write slot ``index`` of every column of the stream (NaN if absent)."""
        if index >= state.capacity:
            self._grow_columns(state, index + 1)
        files = state.files
        files[TS_KEY].values[index] = ts
        written = 1
        nested = False
        for key, value in data.items():
            kind = type(value)
            if kind is float or kind is int or kind is bool:
                column = files.get(key) or self._new_column(state, key)
                _assign(column.values, index, value)
                written += 1
            elif kind is dict:
                nested = True
        if nested or written != len(files):
            self._write_sparse_slots(state, index, data)
        elif written == len(data) + 1:
            state.layout = {key: files[key].values for key in data}
            state.ts_values = files[TS_KEY].values

    def _write_sparse_slots(self, state, index, data):
        present = {TS_KEY}
        for key, value in _numeric_leaves(data):
            column = state.files.get(key) or self._new_column(state, key)
            _assign(column.values, index, value)
            present.add(key)
        for key, column in state.files.items():
            if key not in present:
                column.values[index] = NAN

    def _grow_columns(self, state, needed):
        capacity = _capacity_for(needed)
        for column in state.files.values():
            if column.capacity < capacity:
                column.grow(capacity)
        state.capacity = capacity
        state.layout = None

    # -- durability ------------------------------------------------------------------

    def sync(self):
        """Make everything committed so far durable on disk (fsync)."""
        with self._lock:
            if not self._closed:
                self._sync_locked(full=True)

    def _sync_locked(self, full):
        try:
            if faults.ACTIVE:
                faults.hit("sync", self.directory)
            if full:
                for path in self._unsynced_columns():
                    sync_column(path)
                self._write_watermark(self._marks())
            self.env.sync()
        except (lmdb.Error, OSError) as exc:
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"cannot sync the store at {self.directory} to disk: {exc}") from exc
        self._dirty = False

    def _marks(self):
        """The count of every stream, as the watermark to record once synced."""
        return {state: state.count for state in self._streams.values()}

    def _unsynced_columns(self):
        return [column.path for state in self._streams.values() if state.count > state.synced
                for column in state.files.values()]

    def _write_watermark(self, marks):
        stored = {str(state.entry.sid): count for state, count in marks.items()}
        with self.env.lmdb.begin(write=True) as txn:
            txn_id = txn.id()
            self._check_owner(txn, txn_id)  # another owner's columns are not ours to vouch for
            txn.put(keys.WATERMARK_KEY, json.dumps(stored).encode(),
                    db=self.env.db(keys.META_DB, txn))
        self._last_txn_id = txn_id
        for state, count in marks.items():
            state.synced = count

    def _sync_in_background(self):
        """Fsync what is committed while the training loop goes on committing.

        Only taking the plan and recording the watermark hold the write lock:
        an fsync can take tens of milliseconds, and a commit waiting for it
        would stall the loop (the fsyncs release the GIL).  Slots below the
        planned counts were written before the fsyncs started, so the
        watermark never claims more than what is on disk.
        """
        with self._lock:
            if self._closed or not (self._dirty or any(
                    state.count > state.synced for state in self._streams.values())):
                return
            self._dirty = False
            marks = self._marks()
            paths = self._unsynced_columns()
        try:
            if faults.ACTIVE:
                faults.hit("sync", self.directory)
            for path in paths:
                sync_column(path)
            self.env.sync()  # an fdatasync: safe beside a write transaction, see env.py
        except BaseException:
            self._dirty = True  # try again at the next round
            raise
        with self._lock:
            if not self._closed:
                self._write_watermark(marks)

    def _sync_loop(self):
        period = self.sync_interval or 1.0
        syncs = 0
        while not self._stop.wait(period):
            try:
                self._sync_in_background()
                syncs += 1
                if syncs % READER_CHECK_EVERY == 0:
                    with self._lock:
                        if not self._closed:
                            # A killed reader's slot pins old pages: the file would grow forever.
                            self.env.lmdb.reader_check()
            except Exception as exc:  # never let the thread die silently
                warnings.warn(f"ml_dash: background sync of {self.directory} failed: {exc}")

    @property
    def closed(self):
        return self._closed

    def close(self):
        """Sync everything, stop the sync thread and release the writer lock."""
        with self._lock:
            if self._closed:
                return
            try:
                self._sync_locked(full=True)
            finally:
                self._closed = True
                self._stop.set()
                for state in self._streams.values():
                    for column in state.files.values():
                        column.close()
                self._writer_lock.release()
        if self._thread is not threading.current_thread():
            self._thread.join()


def _watermark(stored):
    """The stored watermark as a dict (empty, so rebuilding every column, if damaged)."""
    try:
        marks = json.loads(stored)
    except ValueError:
        return {}
    return marks if isinstance(marks, dict) else {}


def _full_disk_note(directory):
    """Why a write failed when LMDB only says EIO: it reports a short write so."""
    try:
        stat = os.statvfs(directory)
    except OSError:
        return ""
    free = stat.f_bavail * stat.f_frsize
    return f"; no space left on the device ({free} bytes free)" if free < 1 << 20 else ""


def _short(data, limit=200):
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + "...}"


def _culprit(data, encode):
    """``"field 'k' (str): "`` for the first field that cannot be encoded, or ``""``."""
    for key, value in data.items():
        try:
            encode({key: value})
        except Exception:
            return f"field {_short(key, 60)} ({type(value).__name__}): "
    return ""


def _label(name):
    return f"stream {name!r}" if name else "the root stream"


def _rewind(rows):
    """Set the counts of the streams in ``rows`` back to before their first row."""
    for state, key, _ in reversed(rows):
        state.count = keys.unpack_index(key)


def _count(txn, db):
    """Committed points of a stream: its last index + 1."""
    if db is None:
        return 0
    cursor = txn.cursor(db=db)
    return keys.unpack_index(cursor.key()) + 1 if cursor.last() else 0


def _capacity_for(count):
    capacity = INITIAL_CAPACITY
    while capacity < count:
        capacity *= 2
    return capacity


def _assign(values, index, number):
    try:
        values[index] = number
    except (OverflowError, ValueError):  # an int beyond float64's range (memoryview says ValueError)
        values[index] = float("inf") if number > 0 else float("-inf")


def _numeric_leaves(data, prefix=""):
    """``(key, number)`` for every int, float and bool, nested keys as ``a.b``."""
    for key, value in data.items():
        kind = type(value)
        if kind is float or kind is int or kind is bool:
            yield prefix + key, value
        elif kind is dict:
            yield from _numeric_leaves(value, f"{prefix}{key}.")


