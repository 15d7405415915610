"""Durability of a writer: the fsyncs, the column watermark and the sync thread.

Commits use ``sync=False``, so a committed snapshot survives a killed
process at once; :func:`sync_loop` (the writer's background thread) fsyncs
every ``sync_interval`` seconds while there is unsynced data, and close
fsyncs at the end.  The same syncs flush the column files and then record
in ``meta`` the count of points whose column values are on disk (the
watermark); after an unclean shutdown the columns are rebuilt from the
rows past it (see ``slots.ColumnSlots.open``).  These functions work on the
state of one :class:`~ml_dash.storage.writer.Writer`, whose lock they take.

The files of a close are synced together (:func:`sync_together`): a
journaling filesystem commits its journal once for fsyncs that overlap, so
a close of three columns and the data file costs about one fsync instead
of four in a row (measured on a loaded 2-CPU VM: 20 ms for four in a row,
3 ms together).  The background sync, which nobody waits for, syncs one
file after the other.  The watermark is written only after all of them, so it
never claims a slot that is not on disk.  A close whose columns are at most
:data:`REBUILD_AT_OPEN` points past the watermark syncs once and leaves the
watermark where it is: the next open rebuilds those few slots from the rows,
which costs about what the second fsync would that a watermark written at
close needs to be durable itself.  (Rejected:
writing it at close without that second fsync: a commit left unsynced can
be torn by a crash of the machine, and it would then take the run with it.)
"""

import json
import os
import queue
import threading
import warnings

import lmdb

from ..errors import StorageError
from . import faults, keys
from .columns import sync_column

READER_CHECK_EVERY = 10  # syncs
DEFAULT_PERIOD = 1.0  # seconds between background syncs with sync_interval=0
# Unsynced points a close may leave past the watermark: rebuilding them at
# the next open costs about what the second fsync would (2 to 9 us a point,
# 0.5 to 5 ms an fsync, quiet to loaded 2-CPU VM); a run of this many points
# has its columns still in their first page.
REBUILD_AT_OPEN = 512
SYNC_THREADS = 8  # files of one sync in flight at once


def sync_locked(writer, full):
    """Fsync the data file (and, ``full``, the columns and the watermark), under the write lock.

    ``full`` is the sync of close: columns and data file together, then,
    when the next open would otherwise have more than
    :data:`REBUILD_AT_OPEN` slots to rebuild, the watermark and the data
    file again.
    """
    try:
        if faults.ACTIVE:
            faults.hit("sync", writer.directory)
        if not full:
            writer.env.sync()
        else:
            planned = marks(writer)
            sync_together(writer, unsynced_columns(writer))
            if sum(count - state.synced for state, count in planned.items()) > REBUILD_AT_OPEN:
                write_watermark(writer, planned)
                writer.env.sync()
    except (lmdb.Error, OSError) as exc:
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"cannot sync the store at {writer.directory} to disk: {exc}") from exc
    writer._dirty = False


def sync_together(writer, paths):
    """Fsync the column files at ``paths`` and the data file, overlapping.

    The columns go to the sync threads, the data file is synced by the
    caller meanwhile; every sync is waited for, and the first failure is
    raised after all have ended, so none is still running when the caller
    goes on.
    """
    tasks = [_hand_off(lambda path=path: sync_column(path)) for path in paths]
    failure = None
    try:
        writer.env.sync()
    except BaseException as exc:
        failure = exc
    for task in tasks:
        task.done.wait()
        if task.error is not None and failure is None:
            failure = task.error
    if failure is not None:
        raise failure


class _Task:
    __slots__ = ("job", "done", "error")

    def __init__(self, job):
        self.job = job
        self.done = threading.Event()
        self.error: BaseException | None = None


def _hand_off(job):
    """Queue ``job`` for a sync thread (started on first need, at most :data:`SYNC_THREADS`).

    Plain daemon threads: (rejected) ``concurrent.futures`` refuses new work
    once the interpreter begins to exit, which is when a run left open is
    closed, and its close must still sync.
    """
    task = _Task(job)
    with _pool_guard:
        if _pool.waiting <= 0 and len(_pool.threads) < SYNC_THREADS:
            thread = threading.Thread(target=_sync_thread, args=(_pool,), daemon=True,
                                      name="ml_dash fsync")
            _pool.threads.append(thread)
            thread.start()
        else:
            _pool.waiting -= 1
    _pool.tasks.put(task)
    return task


def _sync_thread(pool):
    while True:
        task = pool.tasks.get()
        try:
            task.job()
        except BaseException as exc:
            task.error = exc
        with _pool_guard:
            pool.waiting += 1  # before done: the caller's next hand-off may count on this thread
        task.done.set()


class _Pool:
    def __init__(self):
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: list = []
        self.waiting = 0  # idle threads, less the tasks queued for them


def _after_fork_in_child():
    # The sync threads did not survive the fork; a child that syncs starts its own.
    global _pool, _pool_guard
    _pool = _Pool()
    _pool_guard = threading.Lock()


_pool = _Pool()
_pool_guard = threading.Lock()
os.register_at_fork(after_in_child=_after_fork_in_child)


def marks(writer):
    """The count of every stream, as the watermark to record once synced."""
    return {state: state.count for state in writer._streams.values()}


def unsynced_columns(writer):
    return [column.path for state in writer._streams.values() if state.count > state.synced
            for column in state.files.values()]


def stored_marks(counts):
    """The watermark to store for ``{state: count synced}``: ``{sid: count}``.

    A track's mark stops one short of its count: its last entry is the one
    an append may still amend in place (see ``entries.py``), whose slots a
    kill before the commit leaves newer than its row, so every open rebuilds
    it from the row.
    """
    return {str(state.entry.sid): count - 1 if count and state.entry.is_track else count
            for state, count in counts.items()}


def write_watermark(writer, counts):
    stored = stored_marks(counts)
    with writer.env.lmdb.begin(write=True) as txn:
        txn_id = txn.id()
        writer._check_owner(txn, txn_id)  # another owner's columns are not ours to vouch for
        txn.put(keys.WATERMARK_KEY, json.dumps(stored).encode(),
                db=writer.env.db(keys.META_DB, txn))
    writer._last_txn_id = txn_id
    for state, count in counts.items():
        state.synced = count


def sync_in_background(writer):
    """Fsync what is committed while the training loop goes on committing.

    Only taking the plan and recording the watermark hold the write lock:
    an fsync can take tens of milliseconds, and a commit waiting for it
    would stall the loop (the fsyncs release the GIL).  Slots below the
    planned counts were written before the fsyncs started, so the
    watermark never claims more than what is on disk.
    """
    with writer._lock:
        if writer._closed or not (writer._dirty or any(
                state.count > state.synced for state in writer._streams.values())):
            return
        writer._dirty = False
        planned = marks(writer)
        paths = unsynced_columns(writer)
    try:
        if faults.ACTIVE:
            faults.hit("sync", writer.directory)
        # One file after the other: nobody waits for this sync, and a wide
        # run's columns synced together would hold many descriptors at once.
        for path in paths:
            sync_column(path)
        writer.env.sync()  # an fdatasync: safe beside a write transaction, see env.py
    except BaseException:
        writer._dirty = True  # try again at the next round
        raise
    with writer._lock:
        if not writer._closed:
            write_watermark(writer, planned)


def sync_loop(writer):
    """The sync thread: started when its first sync is due, then every period."""
    period = writer.sync_interval or DEFAULT_PERIOD
    syncs = 0
    while not writer._stop.is_set():
        try:
            sync_in_background(writer)
            syncs += 1
            if syncs % READER_CHECK_EVERY == 0:
                with writer._lock:
                    if not writer._closed:
                        # A killed reader's slot pins old pages: the file would grow forever.
                        writer.env.lmdb.reader_check()
        except Exception as exc:  # never let the thread die silently
            warnings.warn(f"ml_dash: background sync of {writer.directory} failed: {exc}", RuntimeWarning,
                          stacklevel=1)
        writer._stop.wait(period)
