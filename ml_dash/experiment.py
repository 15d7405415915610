"""Experiments and their run lifecycle.

An :class:`Experiment` names a run by its prefix; ``exp.run`` starts and ends
it (as a context manager, a decorator, or by hand).  While the run is open
it holds the experiment's single-writer lock.
"""

from __future__ import annotations

import atexit
import functools
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import launches, run_context
from .arrays import require
from .console import ConsoleCapture
from .errors import ConfigurationError, ExperimentError, RunNotStartedError
from .files import Bindrs, Files
from .logs import NO_MESSAGE, LogBuilder, Logs
from .maintenance import CheckReport, check
from .metrics import Metrics
from .params import Params
from .paths import parse_prefix, refuse_nesting, resolve_root
from .run import RUN
from .session import Session, _forked_error
from .storage import Store, records
from .system_metrics import SystemMetrics, interval_of
from .tracks import Tracks
from .values import check_info

RUNNING, COMPLETED, FAILED, CANCELLED = "RUNNING", "COMPLETED", "FAILED", "CANCELLED"

_open_experiments: set[Experiment] = set()  # strong: an open run must not vanish with its staged points
_open_lock = threading.Lock()


class Experiment:
    """One run's metrics, params, logs and files, stored under
    ``<dash_root>/<prefix>``.

    ``prefix`` may be a template (``"alice/proj/{now:%Y-%m-%d/%H-%M-%S}"``),
    expanded here into a concrete prefix; without one, ``RUN.prefix`` is
    used.  The other keywords of ``RUN()`` (``user``, ``now``, ``entry``,
    ``job_counter``...) give this experiment's own values of those fields.

    ``system_metrics`` (True, or an interval in seconds), ``context`` and
    ``capture_console`` turn on or off, for this run, what ``RUN`` sets for
    all: the ``system`` stream (:mod:`ml_dash.system_metrics`), the record
    of where the run comes from (:mod:`ml_dash.run_context`, on by default)
    and the capture of stdout and stderr as logs (:mod:`ml_dash.console`).

    >>> with Experiment(prefix="alice/proj/exp").run as exp:   # doctest: +SKIP
    ...     exp.metrics("train").log(loss=0.5).flush()
    """

    def __init__(self, prefix: str | None = None, *, description: str | None = None,
                 readme: str | None = None, tags: list | None = None, bindrs: list | None = None,
                 metadata: dict | None = None, dash_root: str | None = None, dash_url: str | None = None,
                 sync_interval: float = 1.0, lock_timeout: float | None = 0.0,
                 system_metrics: bool | float | None = None, context: bool | None = None,
                 capture_console: bool | None = None, **settings: Any) -> None:
        if dash_url is not None:
            raise ConfigurationError(
                f"dash_url={dash_url!r}: remote mode is not part of this engine; ml_dash stores "
                "runs locally under dash_root")
        unknown = sorted(set(settings) - set(RUN.FIELDS))
        if unknown:
            others = ", ".join(f for f in RUN.FIELDS if f != "prefix")
            raise TypeError(f"Experiment() got an unexpected keyword argument {unknown[0]!r} "
                            f"(besides its own, it takes the RUN settings: {others})")
        # NaN made the sync thread spin, a value past TIMEOUT_MAX killed it (OverflowError)
        if sync_interval is None or not 0 <= float(sync_interval) <= threading.TIMEOUT_MAX:
            raise ConfigurationError(f"sync_interval must be >= 0 seconds (at most "
                                     f"{threading.TIMEOUT_MAX:.0f}), got {sync_interval!r}")
        self.dash_root = resolve_root(dash_root)  # $ML_DASH_ROOT, else .dash, when not given
        self._record: dict = {}
        if prefix is not None:
            settings["prefix"] = prefix
        self.run = Run(self, **settings)  # expands a template, and calls _retarget()
        for name, value in (("system_metrics", system_metrics), ("context", context),
                            ("capture_console", capture_console)):
            if value is not None:
                setattr(self.run, name, value)
        self._extras_asked()  # a typo or a missing psutil named here, not when the run starts
        owner = f"experiment {self.prefix!r}"
        description, tags, metadata = check_info(
            owner, description if description is not None else readme, tags, metadata)
        bindrs = check_info(f"{owner} bindrs", tags=bindrs)[1]
        self._given = {"description": description, "tags": tags, "bindrs": bindrs,
                       "metadata": metadata}
        self._options = {"sync_interval": float(sync_interval),
                         "lock_timeout": _lock_timeout(lock_timeout)}
        self._session: Session | None = None
        self._read_store: Store | None = None  # a Store opened for reading once the run has closed
        self._metrics = Metrics(self)
        self._params = Params(self)
        self._logs = Logs(self)
        self._files = Files(self)
        self._tracks = Tracks(self, self._metrics)
        self._system_metrics = SystemMetrics(self)
        self._console = ConsoleCapture(self._logs)

    # -- identity ------------------------------------------------------------------

    owner = property(lambda self: self._segments[0])
    project = property(lambda self: self._segments[1])
    name = property(lambda self: self._segments[-1])
    prefix = property(lambda self: "/".join(self._segments),
                      doc="``owner/project[/folders...]/name``; set it with ``exp.run.prefix``.")
    folder = property(lambda self: self.prefix, doc="The prefix (the reference's name for it).")
    id = property(lambda self: self.run.id,
                  doc="The launch id (``exp.run.id``): given when the run starts, or earlier "
                      "by an ``{id}`` template field.")

    @property
    def _folder_path(self):
        return self.prefix

    @_folder_path.setter
    def _folder_path(self, value):  # scripts written for the reference set this one
        self.run.prefix = value

    @property
    def _is_open(self):
        """True while the run is open (the reference's name, which scripts test)."""
        return self._session is not None

    def _retarget(self, segments):
        """Point this experiment at the prefix ``segments`` (``exp.run`` calls
        this before taking a new prefix): checked, not yet created."""
        if self._record:
            raise ExperimentError(
                f"experiment {self.prefix!r}: cannot change the prefix to "
                f"{'/'.join(segments)!r}: the run has already started, and its prefix names "
                "its store; set run.prefix before run.start()")
        checked, path = parse_prefix("/".join(segments), self.dash_root)
        refuse_nesting(checked, self.dash_root)
        self._segments, self.path = checked, path

    def _field(self, key):
        given = self._given[key]
        return given if given is not None else self._record.get(key)

    description = property(lambda self: self._field("description"))
    readme = description
    tags = property(lambda self: self._field("tags") or [])
    bindrs = property(lambda self: Bindrs(self._field("bindrs") or [], self._files))
    metadata = property(lambda self: self._field("metadata"))

    @property
    def status(self):
        """``RUNNING``, ``COMPLETED``, ``FAILED`` or ``CANCELLED`` (None before the first start)."""
        return self._record.get("status")

    def __repr__(self):
        return f"<Experiment {self.prefix} {self.status or 'not started'}>"

    # -- the open session ----------------------------------------------------------

    def _open_session(self):
        session = self._session
        if session is None:
            state = "is closed" if self._record else "is not started"
            raise RunNotStartedError(
                f"experiment {self.prefix!r}: the run {state}; use "
                "'with Experiment(...).run as exp:' or call exp.run.start() first")
        if session.forked:
            # Refused before the locks of logs, params and files: in a forked
            # child a thread of the parent that no longer exists may hold them.
            raise _forked_error(session)
        return session

    @staticmethod
    def _streams_are_final():
        """False: a stream may be logged to later, by this run or a restart of it."""
        return False

    def _reader(self):
        """Committed data: the live session's reader, or a reader after close."""
        if self._session is not None:
            return self._session.reader
        if self._read_store is None:
            if not self._record:
                self._open_session()  # raises: never started
            # Released when this object is forgotten, as a view's store is.
            self._read_store = Store.open(self.path)
        return self._read_store.reader

    @property
    def metrics(self) -> Metrics:
        """The root stream; ``metrics("name")`` gives the named streams.

        After the run has closed its streams can still be read, not logged to.
        """
        if not self._record:
            self._open_session()  # raises: never started
        return self._metrics

    def check(self, repair: bool = False) -> CheckReport:
        """Verify this experiment's store: :func:`ml_dash.check` on its prefix.

        On a live run only the read-only check is possible; repair after closing.
        """
        if repair and self._session is not None:
            raise ExperimentError(
                f"experiment {self.prefix!r}: close the run before check(repair=True); "
                "repairs need the writer lock")
        return check(self.prefix, self.dash_root, repair=repair)

    def _started(self, part):
        if not self._record:
            self._open_session()  # raises: never started
        return part

    params = property(lambda self: self._started(self._params),
                      doc="The run's parameters: ``set()``/``log()`` and ``get()``.")
    logs = property(lambda self: self._started(self._logs),
                    doc="The run's text logs: ``info()``, ``error()``... and ``read()``.")
    files = property(lambda self: self._started(self._files),
                     doc="The root folder of the run's files; ``files('models')`` for others.")
    tracks = property(lambda self: self._started(self._tracks),
                      doc="The run's tracks: ``tracks('robot/pose').append(...)``, ``tracks.flush()``.")
    system_metrics = property(lambda self: self._system_metrics,
                              doc="The sampler of the ``system`` stream: ``start(interval=5.0)``, "
                                  "``stop()``, ``running``.")

    def log(self, message: Any = NO_MESSAGE, level: str | None = None,
            metadata: dict | None = None, **extra: Any) -> Logs | LogBuilder:
        """Print and store a log line (see ``exp.logs``; ``level`` default ``"info"``);
        returns ``exp.logs``.

        Without a message, the reference package's deprecated fluent style:
        ``exp.log(epoch=1).info("done")`` (a :class:`~ml_dash.logs.LogBuilder`).
        Only a message left out means that: ``exp.log(None)`` logs "None",
        where the reference package logs nothing (a variable that happens to
        be None would lose its line).
        """
        if message is NO_MESSAGE:
            if level is not None:
                raise TypeError("exp.log() without a message takes no level: the method called "
                                "next names it, as in exp.log(epoch=1).info('done')")
            return self._logs.builder(metadata, extra)
        return self._logs.log(message, level, metadata, **extra)

    def flush(self) -> Experiment:
        """Commit everything staged, across all streams, as one snapshot."""
        self._open_session().flush()
        return self

    # -- lifecycle (called by Run) ---------------------------------------------------

    def _start(self):
        if self._session is not None:
            if not self._session.writer.closed:
                return
            self._finish(CANCELLED)  # its close was interrupted (Ctrl-C) once its writer closed
        if self._read_store is not None:
            self._read_store.close()
            self._read_store = None
        refuse_nesting(self._segments, self.dash_root)  # again: runs may have appeared since
        interval, context, capture = self._extras_asked()  # before anything is written
        self.run._new_id()
        started = []

        def start_record(stored):
            now = time.time()
            record = launches.started(stored, now)  # the history, and the first start kept
            record.pop("context", None)  # an earlier launch's
            recorded = run_context.collect_or_none(self.run.entry) if context else None
            if recorded is not None:
                record["context"] = recorded
                commit = run_context.short(recorded)
                if commit:
                    record["launches"][-1]["commit"] = commit
            record.update({k: v for k, v in self._given.items() if v is not None})
            record.update(prefix=self.prefix, status=RUNNING, endedAt=None,
                          writer={"pid": os.getpid(), "host": socket.gethostname()})
            record.setdefault("createdAt", now)
            started.append(record)
            return [records.experiment_put(record)]

        # The record is stored by the transaction that opens the store: a run
        # that cannot start stores nothing, and a short one pays no commit for it.
        session = Session(self.path, **self._options, on_open=start_record)
        self._record = started[-1]
        self._session = session
        with _open_lock:
            _open_experiments.add(self)
            _sigterm.run_started()
        self._metrics._session_opened()
        self._tracks._session_opened()
        try:
            if capture:
                self._console.start()
            if interval is not None:
                self._system_metrics.start(interval)
        except BaseException as exc:
            self._finish(FAILED, exc)
            raise

    def _extras_asked(self):
        """``(interval or None, context, capture_console)`` of this run's settings, checked."""
        interval = interval_of(self.run.system_metrics)
        if interval is not None:
            require("psutil", "system", "system_metrics")
        for name in ("context", "capture_console"):
            if not isinstance(getattr(self.run, name), bool):
                value = getattr(self.run, name)
                raise ConfigurationError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
        return interval, self.run.context, self.run.capture_console

    def _finish(self, status, error=None):
        session = self._session
        if session is None:
            return
        self._system_metrics.stop()  # its last sample, before the last commit
        self._console.stop()
        self._metrics.buffer.warn_unsummarized(self.prefix)
        if error is not None and status == FAILED:
            failure = launches.error_of(error)  # a log line too: read where the run's story is
            self._logs.log(f"{failure['type']}: {failure['message']}", "error",
                           {"traceback": failure["traceback"]}, _echo=False)  # Python prints it
        record = launches.ended(self._record, status, time.time(), error)
        session.stage_record(records.experiment_put(record))
        session.close()  # flushes; on failure the run stays open for a retry
        self._record = record
        self._session = None
        with _open_lock:
            _open_experiments.discard(self)
            _sigterm.run_ended()


class Run(RUN):
    """``exp.run``: the experiment's RUN settings, and its lifecycle: a
    context manager, a decorator, and manual controls.

    Its ``prefix`` (also ``folder``) may be set, or set to a template, until
    the run first starts: the experiment then stores there.  (Rejected: one
    lifecycle object holding a separate settings object: ``exp.run.prefix``,
    ``exp.run.id`` and ``with exp.run:`` are the same object in scripts
    written for the reference.)
    """

    _exp: Experiment

    def __init__(self, experiment, **settings):
        object.__setattr__(self, "_exp", experiment)
        super().__init__(**settings)

    def _take_prefix(self, segments):
        self._exp._retarget(segments)  # refuses once started, or a prefix nested in a run
        super()._take_prefix(self._exp._segments)

    def start(self) -> Experiment:
        """Open the run (a no-op if it is open); a closed run appends when restarted."""
        self._exp._start()
        return self._exp

    def complete(self) -> None:
        """Commit everything and close the run as ``COMPLETED``."""
        self._exp._finish(COMPLETED)

    def fail(self, error: BaseException | None = None) -> None:
        """Commit everything and close the run as ``FAILED``.

        ``error``: the exception that failed it, recorded (type, message,
        traceback; ``show`` prints them); default the one being handled, if
        called in an ``except`` block.  ``with exp.run`` passes its own.
        """
        if error is None:
            error = sys.exc_info()[1]
        elif not isinstance(error, BaseException):
            raise TypeError(f"run.fail(error=...) takes an exception, got {type(error).__name__}; "
                            "the run is still open")
        self._exp._finish(FAILED, error)

    def cancel(self) -> None:
        """Commit everything and close the run as ``CANCELLED``."""
        self._exp._finish(CANCELLED)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.complete()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.cancel()
        else:
            self.fail(exc)
        return False

    def __call__(self, function: Callable) -> Callable:
        """Decorate ``function(experiment, ...)`` to run inside this run."""
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with self as experiment:
                return function(experiment, *args, **kwargs)
        return wrapper


def ml_dash_experiment(prefix: str, **options: Any) -> Callable:
    """Decorate ``function(..., experiment=exp)`` to run inside a new run of ``prefix``."""
    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with Experiment(prefix=prefix, **options).run as experiment:
                return function(*args, experiment=experiment, **kwargs)
        return wrapper
    return decorate


class _SigtermAsInterrupt:
    """SIGTERM handled like Ctrl-C while runs are open, where the application has not
    installed a handler of its own.

    ``docker stop``, Slurm preemption and ``kill`` send SIGTERM, whose default
    ends the process on the spot: the run stays ``RUNNING`` (stale) and its
    staged points are lost.  While a run is open, and if SIGTERM still has
    its default action when the first run starts (in the main thread: only
    it may set handlers), the handler raises ``KeyboardInterrupt`` in the
    main thread instead; ``with exp.run`` then records ``CANCELLED`` and
    commits what was staged, as does the exit of the interpreter for runs
    started by hand, and the process ends as after Ctrl-C.  The handler is
    for one signal: a second SIGTERM takes the default action at once.  It
    is removed when the last run ends (unless the application replaced it
    meanwhile).  (Rejected: committing inside the handler: it runs between
    two bytecodes of the main thread, maybe inside a flush holding its lock.)
    """

    def __init__(self):
        self._runs = 0  # open runs of this process; changed under _open_lock
        self._installed_in = None  # the pid that installed the handler

    def run_started(self):
        self._runs += 1
        if (self._runs == 1 and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            signal.signal(signal.SIGTERM, self._handle)
            self._installed_in = os.getpid()

    def run_ended(self):
        self._runs = max(0, self._runs - 1)
        if self._runs == 0:
            self._remove()

    def _remove(self):
        if self._installed_in is None or signal.getsignal(signal.SIGTERM) != self._handle:
            return
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._installed_in = None
        except ValueError:
            pass  # not the main thread: the handler stays, and acts as the default when no run is open

    def _handle(self, signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        installed_in, self._installed_in = self._installed_in, None
        if installed_in != os.getpid() or not self._runs:
            os.kill(os.getpid(), signal.SIGTERM)  # nothing of ours to close: the default action
            return
        raise KeyboardInterrupt("SIGTERM: ml_dash cancels the open runs, as on Ctrl-C")

    def after_fork_in_child(self):
        """A forked child (a worker) has no run of its own: SIGTERM ends it as by default."""
        self._runs = 0
        if signal.getsignal(signal.SIGTERM) == self._handle:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self._installed_in = None


_sigterm = _SigtermAsInterrupt()
os.register_at_fork(after_in_child=_sigterm.after_fork_in_child)


def _after_fork_in_child():
    # A thread of the parent may have held it at the fork; in the child that
    # thread is gone and the exit handler below would wait for it forever.
    global _open_lock
    _open_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_open_runs():
    """Commit what open runs staged when the interpreter exits.

    A script that ends normally completes its runs; one ended by an uncaught
    exception fails them, or cancels them if it was Ctrl-C (or SIGTERM).
    """
    last = getattr(sys, "last_value", None)
    status = COMPLETED if last is None else CANCELLED if isinstance(last, KeyboardInterrupt) else FAILED
    with _open_lock:
        # a forked child's copies of its parent's runs are the parent's to close
        experiments = [e for e in _open_experiments
                       if e._session is not None and e._session.pid == os.getpid()]
    for experiment in experiments:
        try:
            experiment._finish(status, last if status == FAILED else None)
        except Exception as exc:  # report, and keep closing the others
            print(f"ml_dash: could not close {experiment.prefix} at exit: {exc}", file=sys.stderr)


def _lock_timeout(value):
    """``lock_timeout`` as seconds to wait for another writer, or None to wait for as long
    as it takes; ``ConfigurationError`` naming the value otherwise.

    (Rejected: ``math.inf`` for "forever" alone; None is what users write, and ``float(None)``
    was a bare ``TypeError`` that did not say which option it came from.)
    """
    if value is None:
        return None
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float)) \
            or not value >= 0:
        raise ConfigurationError(f"lock_timeout must be a number of seconds >= 0, or None to wait "
                                 f"until the other writer ends, got {type(value).__name__} {value!r}")
    return float(value)
