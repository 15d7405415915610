"""A run's open connection to its store: staging, flushing and closing.

A session exists from ``run.start()`` to ``complete()``/``fail()``/
``cancel()``.  It owns the writer (and with it the single-writer lock) and
the staging queue that ``log()`` appends to.
"""

import collections
import threading
import time

from .storage import Writer, StoreReader, acquire, release

# Defaults chosen so that a loop that flushes every step never reaches them.
MAX_BACKLOG = 100_000  # staged points
MAX_AGE = 60.0  # seconds since the last flush


class Session:
    def __init__(self, path, sync_interval, lock_timeout):
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

    @property
    def pending(self):
        return len(self.staged) + len(self._records)

    def flush(self):
        """Commit everything staged as one snapshot; on failure keep it staged."""
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
                    staged.extendleft(reversed(points))
                    self._records[:0] = records
                raise
            finally:
                self._flushed_at = time.monotonic()

    def close(self):
        """Flush, sync and release the store; raises if the flush fails."""
        self.flush()
        self.writer.close()
        release(self.env, writable=True)
        self.env = None
