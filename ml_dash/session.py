"""A run's open connection to its store: staging, flushing and closing.

A session exists from ``run.start()`` to ``complete()``/``fail()``/
``cancel()``.  It owns the writer (and with it the single-writer lock) and
the staging queue that ``log()`` appends to.

Points that stay staged are committed on a timer, about
``ML_DASH_FLUSH_INTERVAL`` seconds (default 5) after they were staged, by a
thread of the session: a loop that never calls ``flush()`` is still visible
to readers and safe from ``kill -9`` within seconds.  Such a commit takes
whatever is staged at that moment, so it may split a step; only ``flush()``
marks a coherent snapshot.  It takes the same lock as ``flush()``, which
pops the staged points under it: a timed commit racing a user's flush
commits every point once.  (Rejected: checking the age in ``log()``, as it
once was: costs every call something, and a loop that logs rarely never got
there; and committing from the writer's sync thread, which belongs to the
storage layer and knows nothing of staging.)
"""

import collections
import math
import os
import threading
import time
import warnings
import weakref
from itertools import repeat, starmap
from typing import Any

from .delayed import call_later
from .errors import ConfigurationError, ExperimentError, RunNotStartedError, StreamLimitError, UnstorablePointError
from .storage import Store

# Chosen so that a loop that flushes every step never reaches it.
MAX_BACKLOG = 100_000  # staged points
FLUSH_INTERVAL_VARIABLE = "ML_DASH_FLUSH_INTERVAL"
# The switch scripts written for the public ml-dash package use to turn its client-side
# write buffer off: then every log() is committed by the call itself.
BUFFER_VARIABLE = "ML_DASH_BUFFER_ENABLED"
DEFAULT_FLUSH_INTERVAL = 5.0  # seconds a staged point waits at most for a commit
TIMER_TICKS = 4  # wake-ups per interval: a point waits 3/4 to 4/4 of it


class Session:
    def __init__(self, path, sync_interval, lock_timeout, on_open=None):
        """``on_open``: see ``Store.open`` (the run's start record)."""
        self.flush_interval = flush_interval()
        write_through = not buffer_enabled()  # both checked before the store and its lock are taken
        self.path = path
        self.pid = os.getpid()
        self.forked = False  # set in a child process: see _after_fork_in_child
        self.store = Store.open(path, write=True, sync_interval=sync_interval,
                                lock_timeout=lock_timeout, on_open=on_open)
        writer = self.store.writer
        assert writer is not None  # opened to write
        self.writer = writer
        self.reader = self.store.reader
        # A deque, because append and popleft are atomic: threads may log
        # while another one flushes, and no point is lost or taken twice.
        # Stream.log appends to it directly: it is the hot path.
        # A _WriteThroughQueue when ML_DASH_BUFFER_ENABLED=false, a _ParentsQueue in a forked child.
        self.staged: Any = _WriteThroughQueue(self) if write_through else collections.deque()
        # Track entries, staged apart: the writer orders and merges them by _ts.  Never a
        # write-through queue: an entry is staged under the lock a flush takes (TrackFloors),
        # so Track.append commits after staging when write_through is set.
        self.staged_entries: Any = collections.deque()
        self._floors = TrackFloors(self.writer)
        self.write_through = write_through
        self._records: list = []
        self._flush_lock = threading.Lock()
        self.max_backlog = MAX_BACKLOG
        self._flushes = 0  # commits so far: tells the timer that what it saw was taken
        _sessions.add(self)
        self._stop_timer = threading.Event()
        # The timer thread starts when its first look is due: a run closed
        # before then (most of a sweep's) never starts it (see delayed.py).
        self._timer: threading.Thread | None = None
        self._timer_guard = threading.Lock()  # its start against close()
        self._start_timer_call = call_later(self.flush_interval / TIMER_TICKS, self._start_timer)

    def _start_timer(self):
        with self._timer_guard:
            if not self._stop_timer.is_set() and self._timer is None:
                self._timer = threading.Thread(target=self._commit_on_timer, daemon=True,
                                               name=f"ml_dash timed commit {self.path}")
                self._timer.start()

    def _commit_on_timer(self):
        """Commit points staged for about ``flush_interval`` seconds, until closed.

        The thread wakes ``TIMER_TICKS`` times per interval, the first time
        one tick after the session opened (when it is started); the first
        time it sees points staged since the last commit stands for when
        they were staged (at most a tick late), so it commits between 3/4
        and 4/4 of the interval after.  Nothing is timed on the logging path.
        """
        tick = self.flush_interval / TIMER_TICKS
        first_seen = None  # (commits then, monotonic time) when points were first seen staged
        while not self._stop_timer.is_set():
            if not self.pending:
                first_seen = None
            else:
                now = time.monotonic()
                if first_seen is None or first_seen[0] != self._flushes:
                    first_seen = (self._flushes, now)
                if now - first_seen[1] >= self.flush_interval - tick - 1e-3:
                    first_seen = None
                    try:
                        self.flush()
                    except Exception as exc:  # the thread must live on; the next flush() raises it
                        warnings.warn(f"ml_dash: timed commit of {self.path} failed: {exc}",
                                      RuntimeWarning, stacklevel=1)
            self._stop_timer.wait(tick)

    def stage_record(self, record):
        """Stage a record (see ``storage.records``): a put or a delete, for the next flush."""
        self.stage_records([record])

    def stage_records(self, records):
        """Stage ``(db_name, key, value)`` puts and deletes; one flush takes all or none."""
        if self.forked:  # before the lock: a thread of the parent may have held it at the fork
            raise _forked_error(self)
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
    def commits(self):
        """Snapshots committed so far: a caller whose commit raised tells by it
        whether its snapshot is stored (its fsync failed, or an interrupt came
        just as the commit returned)."""
        return self.writer.snapshots

    @property
    def pending(self):
        return len(self.staged) + len(self.staged_entries) + len(self._records)

    def stage_entry(self, spec, data, ts, auto):
        """Stage a track entry at ``ts``, or at ``auto()`` when ``ts`` is None.

        ``ValueError`` if it is older than what the track has committed.
        Checked (and an automatic time taken) under one lock that
        :meth:`flush` takes to pop, so no commit slips between the check and
        the staging: of two threads appending automatic times to one track,
        the later time is never flushed before the earlier one is staged.
        """
        if self.forked:
            raise _forked_error(self)
        if len(self.staged) + len(self.staged_entries) >= self.max_backlog:
            self.flush()  # before staging, as in Stream.log
        self._floors.stage(self.staged_entries, spec, data, ts, auto)

    def flush(self, staged=None):
        """Commit everything staged (in ``staged``, else :attr:`staged`) as one snapshot;
        on failure keep it staged."""
        if self.forked:
            raise _forked_error(self)
        with self._flush_lock:
            if staged is None:
                staged = self.staged
            points: list = []
            entries: Any = ()
            records = []
            snapshots = self.writer.snapshots
            try:
                # A signal handler (Ctrl-C, SIGTERM) raises only between bytecodes:
                # extend() pops the points in one C call into a list that the
                # handler below still holds, so none is lost on the way.
                points.extend(starmap(staged.popleft, repeat((), len(staged))))
                if self.staged_entries:
                    entries = []
                    self._floors.take(self.staged_entries, entries)
                records = self._records
                self._records = []
                if not points and not records and not entries:
                    return
                self._flushes += 1
                self.writer.commit(points, records, entries)
            except BaseException as exc:
                # Committed, only not fsynced yet, or interrupted (Ctrl-C, SIGTERM) once
                # committed: staged again, it would be stored twice.
                if self.writer.snapshots == snapshots:
                    # points that can never be stored are dropped alone; the rest stay staged
                    rejected = _rejected(exc, [*points, *entries])
                    staged.extendleft(reversed([p for p in points if id(p) not in rejected]))
                    self._floors.give_back(self.staged_entries,
                                           [p for p in entries if id(p) not in rejected])
                    self._records[:0] = records
                raise

    def close(self):
        """Flush, sync and release the store; raises if the flush fails."""
        if self.forked:
            raise _forked_error(self)
        if not self.writer.closed:  # else a close interrupted (Ctrl-C, SIGTERM) after it: finish it
            self.flush()  # if it fails the run stays open, its timer still running
            self._stop_timer.set()
            self._start_timer_call.cancel()
            with self._timer_guard:
                timer = self._timer
            if timer is not None and timer is not threading.current_thread():
                timer.join()  # a timed commit in progress ends first
            # Other threads may go on logging while the run closes: from here on their
            # points are refused (RunNotStartedError at the call), and the last flush
            # takes what they staged before.  (Left in place, the queue took points
            # until the experiment let go of this session: log() returned for each, and
            # up to max_backlog of them were dropped with the closed store.)
            staged, self.staged = self.staged, _ClosedQueue(self)
            try:
                self.flush(staged)
            except BaseException:
                self.staged = staged  # the run stays open, for a retry
                raise
        self.store.close()  # finishes a close that was interrupted after the writer closed


def _rejected(exc, points):
    """``id()`` of the staged points that a failed commit says can never be stored."""
    if isinstance(exc, StreamLimitError) and exc.stream is not None:
        return {id(p) for p in points if p[0].name == exc.stream}
    if isinstance(exc, UnstorablePointError):
        return {id(p) for p in points if p[1] is exc.data}
    return set()


class TrackFloors:
    """The oldest ``_ts`` each track of a session may still take.

    A track's ``_ts`` column must stay strictly increasing: an entry may be
    older than other staged ones (the writer orders them), or have the
    ``_ts`` of the last committed entry (merged into it), but not be older
    than that.  The floor of a track is the last ``_ts`` committed, or taken
    by a flush for its commit; :meth:`stage` checks and stages under the
    same lock that :meth:`take` pops under, so a timed commit between the
    check and the staging cannot make an entry older than its floor.  A
    commit that fails gives its entries back with :meth:`give_back`, which
    lowers the floors to what is committed again: left raised, an entry the
    commit dropped as unstorable would refuse valid ones older than it.
    """

    def __init__(self, writer):
        self._writer = writer
        self._lock = threading.Lock()
        self._floors: dict = {}  # TrackName -> floor (None: nothing committed)
        self._newest: dict = {}  # TrackName -> newest _ts staged

    def stage(self, queue, spec, data, ts, auto):
        name = spec.name
        with self._lock:
            if ts is None:
                ts = auto()
            try:
                floor = self._floors[name]
            except KeyError:  # a track's first entry in this session: what the store holds
                floor = self._floors[name] = self._writer.last_ts(name)
            if floor is not None and ts < floor:
                raise ValueError(
                    f"track {name.topic!r}: _ts={ts!r} is older than its last committed entry, "
                    f"at _ts={floor!r}; entries of a track are ordered by _ts, and only those "
                    "not flushed yet can still be put before others")
            queue.append((spec, data, ts))
            newest = self._newest.get(name)
            if newest is None or ts > newest:
                self._newest[name] = ts

    def take(self, queue, into):
        """Pop every staged entry of ``queue`` into ``into``, raising the floors past them."""
        with self._lock:
            into.extend(starmap(queue.popleft, repeat((), len(queue))))
            floors = self._floors
            for name, ts in self._newest.items():
                floor = floors.get(name)
                if floor is None or ts > floor:
                    floors[name] = ts
            self._newest.clear()

    def give_back(self, queue, entries):
        """Stage ``entries`` (taken by a commit that failed) again, in front of ``queue``.

        The floors go back to the writer's committed ends (read again at
        the next :meth:`stage`), and the entries count as staged again.
        (Rejected: lowering each floor to its value before :meth:`take`:
        :meth:`take` does not keep it, and the writer already knows it.)
        """
        with self._lock:
            queue.extendleft(reversed(entries))
            self._floors.clear()
            newest = self._newest
            for spec, _, ts in entries:
                known = newest.get(spec.name)
                if known is None or ts > known:
                    newest[spec.name] = ts


def flush_interval():
    """Seconds from ``ML_DASH_FLUSH_INTERVAL`` (default 5), checked before a run opens."""
    text = os.environ.get(FLUSH_INTERVAL_VARIABLE)
    if text is None:
        return DEFAULT_FLUSH_INTERVAL
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (0 < seconds <= threading.TIMEOUT_MAX):  # longer waits kill the timer thread
        raise ConfigurationError(
            f"{FLUSH_INTERVAL_VARIABLE}={text!r}: expected a number of seconds > 0 (how long "
            "a staged point waits at most before it is committed)")
    return seconds


def buffer_enabled():
    """False when ``ML_DASH_BUFFER_ENABLED`` says so (``false``, ``0``, ``no``, ``off``):
    then every point is committed as it is logged.  Checked when a run opens."""
    text = os.environ.get(BUFFER_VARIABLE)
    if text is None:
        return True
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on", ""):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ConfigurationError(f"{BUFFER_VARIABLE}={text!r}: expected true or false (false commits every "
                             "log() as it is called)")


class _WriteThroughQueue(collections.deque):
    """The staging queue of a session that commits every point as it is staged.

    What ``ML_DASH_BUFFER_ENABLED=false`` asks for: a ``log()`` is then its own
    snapshot, read back at once (as with ``log(_flush=True)``), at the cost of one
    commit per call.  A subclass of the queue rather than a test in ``log()``, so
    that the buffered path, the default, pays nothing for it.  ``Session.flush``
    pops with ``popleft``, which is the deque's own.
    """

    def __init__(self, session):
        super().__init__()
        self._session = weakref.ref(session)  # no cycle: a forgotten session is collected

    def append(self, item):
        super().append(item)
        self._commit()

    def extend(self, items):
        super().extend(items)
        self._commit()

    def _commit(self):
        session = self._session()
        if session is not None:
            session.flush()


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


class _ClosedQueue(collections.deque):
    """The staging queue of a session being closed: refuses points with ``RunNotStartedError``.

    A deque, always empty, so that a flush of another thread (its backlog was full) finds
    nothing to commit.
    """

    def __init__(self, session):
        super().__init__()
        self._session = session

    def append(self, item):
        raise RunNotStartedError(
            f"{self._session.path}: the run is closed; use 'with Experiment(...).run as exp:' "
            "or call exp.run.start() first")

    extend = append


def _forked_error(session):
    return ExperimentError(
        f"{session.path} is written by process {session.pid}; this forked child of it "
        "can read the run but not write to it: log to an Experiment of its own, or send "
        "the values to the parent")


_sessions: weakref.WeakSet[Session] = weakref.WeakSet()


def _after_fork_in_child():
    for session in list(_sessions):
        session.forked = True
        session.staged = _ParentsQueue(session)
        session.staged_entries = _ParentsQueue(session)


os.register_at_fork(after_in_child=_after_fork_in_child)
