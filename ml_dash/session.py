"""A run's open connection to its store: staging, flushing and closing.

A session exists from ``run.start()`` to ``complete()``/``fail()``/
``cancel()``.  It owns the writer (and with it the single-writer lock) and
the staging queue that ``log()`` appends to.
"""

import collections
import os
import threading
import time
import weakref

from .errors import ExperimentError
from .storage import Writer, StoreReader, acquire, release

# Defaults chosen so that a loop that flushes every step never reaches them.
MAX_BACKLOG = 100_000  # staged points
MAX_AGE = 60.0  # seconds since the last flush


class Session:
    def __init__(self, path, sync_interval, lock_timeout):
        self.path = path
        self.pid = os.getpid()
        self.forked = False  # set in a child process: see _after_fork_in_child
        self.env = acquire(path, writable=True)
        try:
            self.writer = Writer(self.env, path, sync_interval=sync_interval, lock_timeout=lock_timeout)
        except BaseException:
            release(self.env, writable=True)
            raise
        self.reader = StoreReader(self.env, path)
        # A deque, because append and popleft are atomic: threads may log
        # while another one flushes, and no point is lost or taken twice.
        # Stream.log appends to it directly: it is the hot path.
        self.staged = collections.deque()
        self._records = []
        self._flush_lock = threading.Lock()
        self.max_backlog = MAX_BACKLOG
        self._max_age = MAX_AGE
        self._flushed_at = time.monotonic()
        _sessions.add(self)

    def flush_if_old(self):
        """Flush when the last flush is older than the age threshold."""
        if time.monotonic() - self._flushed_at > self._max_age:
            self.flush()

    def stage_record(self, db_name, key, value):
        """Stage a put (or, with ``value`` None, a delete) for the next flush."""
        self.stage_records([(db_name, key, value)])

    def stage_records(self, records):
        """Stage ``(db_name, key, value)`` puts and deletes; one flush takes all or none."""
        with self._flush_lock:
            self._records.extend(records)

    def commit_records(self, records):
        """Commit ``records`` now, as a snapshot of their own: all, or (raising) none.

        Unlike a flush, a failure leaves nothing staged, so the caller can
        promise that a call that raised stored nothing (``params.set()``).
        """
        if self.forked:
            raise _forked_error(self)
        with self._flush_lock:
            self.writer.commit([], records)

    @property
    def pending(self):
        return len(self.staged) + len(self._records)

    def flush(self):
        """Commit everything staged as one snapshot; on failure keep it staged."""
        if self.forked:
            raise _forked_error(self)
        with self._flush_lock:
            staged = self.staged
            points = [staged.popleft() for _ in range(len(staged))]
            records, self._records = self._records, []
            if not points and not records:
                return
            try:
                self.writer.commit(points, records)
            except BaseException as exc:
                if not getattr(exc, "committed", False):  # else it is stored, only not fsynced yet
                    # points that can never be stored are dropped alone; the rest stay staged
                    rejected = {id(p) for p in getattr(exc, "rejected", ())}
                    staged.extendleft(reversed([p for p in points if id(p) not in rejected]))
                    self._records[:0] = records
                raise
            finally:
                self._flushed_at = time.monotonic()

    def close(self):
        """Flush, sync and release the store; raises if the flush fails."""
        if self.forked:
            raise _forked_error(self)
        self.flush()
        self.writer.close()
        release(self.env, writable=True)
        self.env = None


class _ParentsQueue:
    """The staging queue of a session inherited through ``fork()``: refuses points.

    The child shares the parent's store but not its writer; a point it staged
    would be lost (or, flushed, clash with the parent's).  Reading is fine.
    """

    def __init__(self, session):
        self._session = session

    def __len__(self):
        return 0

    def append(self, item):
        raise _forked_error(self._session)

    extend = append


def _forked_error(session):
    return ExperimentError(
        f"{session.path} is written by process {session.pid}; this forked child of it "
        "can read the run but not write to it: log to an Experiment of its own, or send "
        "the values to the parent")


_sessions = weakref.WeakSet()


def _after_fork_in_child():
    for session in list(_sessions):
        session.forked = True
        session.staged = _ParentsQueue(session)


os.register_at_fork(after_in_child=_after_fork_in_child)
