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

Opening and recovery are in ``opening.py``, the column slots in
``slots.py``, fsyncs and the watermark in ``durability.py``.
"""

import os
import threading
import time
from typing import Any

import lmdb

from ..delayed import call_later
from ..errors import StorageError, StreamLimitError, UnstorablePointError
from ..names import stream_label as _label
from . import durability, faults, keys, opening
from .catalog import ROOT, TS_KEY, Catalog, StreamEntry
from .codec import PointEncoder
from .columns import INITIAL_CAPACITY
from .entries import restore as restore_amends
from .entries import stage_entries
from .env import MAX_DBS
from .lock import WriterLock
from .owner import check_ownership, owner_record
from .slots import ColumnSlots, StreamState

MAX_MAP_SIZE = 1 << 40
# Named streams and tracks per experiment, together, besides the root stream:
# every one is an LMDB sub-database, and the rest of MAX_DBS is kept for the
# root, meta, catalog, params, logs, files and later ones.
MAX_STREAMS = MAX_DBS - 24
BATCHED_ROWS = 16  # a snapshot of this many rows or more is put with one putmulti per stream


class StreamSpec:
    """What the writer is told of a stream with each point: its name in the
    store (``""`` for the root) and its description record (description,
    tags, metadata), stored when the stream is created.  One per stream,
    made once, so that staging a point costs nothing for it."""

    __slots__ = ("name", "info")

    def __init__(self, name, info):
        self.name = name
        self.info = info


class Writer:
    """Owns an experiment's store for writing; one per experiment per process."""

    def __init__(self, env, directory, sync_interval=1.0, lock_timeout=0.0, on_open=None):
        """``on_open``: see :func:`opening.open_store`."""
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
        self._pending_catalog: list = []  # catalog items not yet committed
        self._slots = ColumnSlots(directory, self._pending_catalog)
        self._dirty = False
        self._closed = False
        try:
            with self._lock:
                opening.open_store(self, on_open)
        except BaseException:
            self._writer_lock.release()
            raise
        self._stop = threading.Event()
        # The sync thread starts when its first sync is due: a run closed
        # before then (most of a sweep's) never starts it (see delayed.py).
        self._thread: threading.Thread | None = None
        # Its start against close(); not the write lock, which a long commit
        # holds: the thread that starts it serves every run of the process.
        self._thread_guard = threading.Lock()
        self._start_sync = call_later(self.sync_interval or durability.DEFAULT_PERIOD,
                                      self._start_sync_thread)

    def _start_sync_thread(self):
        with self._thread_guard:
            if not self._closed and self._thread is None:
                self._thread = threading.Thread(target=durability.sync_loop, args=(self,),
                                                name=f"ml_dash sync {self.directory}", daemon=True)
                self._thread.start()

    # -- the write path ----------------------------------------------------------

    def commit(self, points, records=(), entries=()):
        """Commit ``points``, ``records`` and track ``entries`` as one transaction.

        ``points``: ``(spec, data, ts)`` tuples in logging order, ``spec``
        a :class:`StreamSpec`; ``entries`` the same for tracks (their spec's
        name a ``TrackName``), in any order: they are ordered and merged by
        ``_ts`` (see ``entries.py``).  Whether a commit
        that raised is stored anyway (its fsync failed, or an interrupt
        came as it returned) is told by :attr:`snapshots`, not the error.  ``records``:
        ``(db_name, key, value)`` puts, or deletes where ``value`` is None.
        On failure nothing is committed and the caller keeps the snapshot.
        """
        with self._lock:
            if self._closed:
                raise StorageError(f"the store at {self.directory} is closed")
            if faults.ACTIVE:
                faults.hit("before_columns")
            snapshots = self.snapshots
            try:
                self._transact(points, records, time.time(), entries)
            except BaseException:
                if self.snapshots != snapshots:  # committed all the same
                    self._dirty = True
                raise
            if faults.ACTIVE:
                faults.hit("after_commit")
            self._dirty = True
            if self.sync_interval == 0:
                # A failure here leaves the snapshot committed (readers see it,
                # a retry would store it twice): self.snapshots says so.
                durability.sync_locked(self, full=False)

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
        rows: list = []
        append = rows.append
        try:
            for stream, data, ts in points:
                state = streams.get(stream.name) or self._new_stream(stream, created)
                index = state.count
                value = pack((created, ts, data))
                if checksum is not None:  # the checksum of format 2, inline (see PointEncoder)
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
                self._slots.write(state, index, ts, data)
        except BaseException as exc:
            _rewind(rows)
            if isinstance(exc, StreamLimitError):
                raise  # only this stream's points are refused (exc.stream); the rest can be committed
            if isinstance(exc, (TypeError, ValueError, OverflowError)) and not isinstance(exc, StorageError):
                # A value log() let through but the encoder refuses (a str with a
                # lone surrogate): name it, and let the caller drop just this point.
                raise UnstorablePointError(
                    f"{_label(stream.name)}: cannot store the point {_short(data)}: "
                    f"{_culprit(data, pack)}{exc}; the point was dropped", data) from exc
            raise
        return rows

    def _transact(self, points, records, created, entries=()):
        """Check ownership, write the column slots, put the rows and records, commit.

        On failure nothing is committed and every stream's count is set back.
        An exception that arrives once the commit is done (a signal handler
        raising ``KeyboardInterrupt`` as the commit returns) is re-raised with
        :attr:`snapshots` counted, so that the caller does not store it twice.
        """
        rows = None
        amends: Any = ()  # a snapshot without track entries allocates nothing for them
        lasts: Any = ()
        while True:
            txn = self.env.lmdb.begin(None, None, True)  # write=True, positional: see _put_all
            txn_id = txn.id()
            created_dbs: list = []
            try:
                if txn_id != self._last_txn_id + 1:  # inline _check_owner: the hot path
                    self._check_owner(txn, txn_id)
                if rows is None:
                    staged = self._stage_points(points, created)
                    if entries:
                        try:
                            amends, lasts = stage_entries(self, txn, entries, created, staged)
                        except BaseException:
                            _rewind(staged)
                            raise
                    rows = staged
                self._put_all(txn, rows, records, created_dbs, amends)
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
                        restore_amends(self, amends)
                    raise
                continue
            except BaseException as exc:
                if self._did_commit(txn_id):
                    if self._last_txn_id != txn_id:
                        self.snapshots += 1
                    self._last_txn_id = txn_id
                    self._committed(lasts)
                    raise  # committed: self.snapshots tells the caller
                self._abort(txn)
                self._forget(created_dbs)
                if rows is not None:
                    _rewind(rows)
                    restore_amends(self, amends)
                if isinstance(exc, (lmdb.Error, OSError)) and not isinstance(exc, StorageError):
                    raise StorageError(f"cannot commit to the store at {self.directory}: "
                                       f"{exc}{_full_disk_note(self.directory)}") from exc
                raise
            self._committed(lasts)
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

    def _committed(self, lasts=()):
        if lasts:
            for state, ts in lasts:  # each track's last _ts, now committed
                state.last_ts = ts
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

    def _put_all(self, txn, rows, records, created_dbs, amends=()):
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
            batches: dict = {}
            for state, key, value in rows:
                batch = batches.get(state)
                if batch is None:
                    batch = batches[state] = []
                batch.append((key, value))
            for state, batch in batches.items():
                cursor = txn.cursor(state.db or self._create_db(state, txn, created_dbs))
                if cursor.putmulti(batch, append=True)[1] != len(batch):
                    self._refuse_index(state, batch[0][0])
        if amends:
            for state, key, value, _, _ in amends:  # a committed entry, rewritten in place
                txn.put(key, value, db=state.db)
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
        if stream.name != ROOT and len(self._streams) - (ROOT in self._streams) >= MAX_STREAMS:
            raise StreamLimitError(
                f"cannot create {_label(stream.name)} in {self.directory}: an experiment "
                f"holds at most {MAX_STREAMS} named streams and tracks together; its points were dropped, the rest of "
                "the snapshot stays staged (log such values as keys of fewer streams)",
                stream=stream.name)
        entry = StreamEntry(self._catalog.next_sid(), stream.name,
                            dict(stream.info, createdAt=created))
        # Encoded first: a record that cannot be encoded must change nothing
        # (it used to leave the stream's column staged without its record).
        item = self._catalog.encode_stream(entry)
        state = StreamState(entry)
        state.capacity = INITIAL_CAPACITY
        self._slots.new_column(state, TS_KEY)  # may fail (disk full): then nothing is registered
        self._catalog.add(entry)
        self._pending_catalog.append(item)
        self._streams[stream.name] = state
        return state

    def stream_names(self):
        """Names of the named streams and tracks (``TrackName``) this writer
        knows: stored, or created by a snapshot not committed yet.  Both
        count against :data:`MAX_STREAMS`."""
        with self._lock:
            return [name for name in self._streams if name != ROOT]

    def last_ts(self, name):
        """The last committed ``_ts`` of track ``name``, None when it has no entry."""
        state = self._streams.get(name)
        return None if state is None else state.last_ts


    @property
    def closed(self):
        return self._closed

    def close(self):
        """Sync everything, stop the sync thread and release the writer lock."""
        with self._lock:
            if self._closed:
                return
            try:
                durability.sync_locked(self, full=True)
            finally:
                self._closed = True
                self._stop.set()
                self._start_sync.cancel()
                for state in self._streams.values():
                    for column in state.files.values():
                        column.close()
                self._writer_lock.release()
        with self._thread_guard:  # started before _closed was set, or never
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()



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


def _rewind(rows):
    """Set the counts of the streams in ``rows`` back to before their first row."""
    for state, key, _ in reversed(rows):
        state.count = keys.unpack_index(key)
