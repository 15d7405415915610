"""RUN: the settings a launch names its experiments by.

``RUN``'s class attributes are the defaults every later ``Experiment()``
starts from; a script (or ``ML_DASH_PREFIX``, ``ML_DASH_USER``) sets them
once::

    from ml_dash import RUN, Experiment

    RUN.entry = __file__                                   # the script: its path names the run
    RUN.prefix = "{user}/vision/{path_stem}/{now:%Y-%m-%d/%H-%M-%S}"
    with Experiment().run as exp:                          # a fresh folder per launch
        ...

An instance is one experiment's copy of them (``exp.run`` is one): its
``prefix`` is the template expanded once, when the instance is made, and
``owner``, ``project`` and ``name`` are that prefix's segments.

The fields a template may use: the settings below (``user``, ``project``,
``now``, ``entry``, ``project_root``, ``path_stem``, ``job_counter``,
``job_name``, ``id``), ``date`` and ``datetime_str`` (of ``now``), and, when a
prefix is set on an instance, its current ``owner`` and ``name``.
"""

from __future__ import annotations

import getpass
import os
import sys
import threading
import time
from datetime import datetime
from typing import Any

from . import templates
from .errors import ConfigurationError
from .paths import check_prefix

PROJECT_FILES = ("pyproject.toml", "requirements.txt", "setup.py", "setup.cfg")
FIELDS = ("user", "project", "prefix", "now", "id", "entry", "project_root", "path_stem",
          "job_counter", "job_name")
"""The settings: class attributes of RUN, keywords of ``RUN()`` and ``Experiment()``."""
DERIVED = ("date", "datetime_str", "owner", "name")
"""Template fields read from the settings (``owner`` and ``name``: of the current prefix)."""
TEMPLATE_FIELDS = ("project", "prefix", "job_name", "path_stem")
"""The settings that may themselves be templates."""


def find_project_root(start: str | os.PathLike | None = None) -> str:
    """The nearest folder at or above ``start`` (a file or folder; default the
    current directory) that holds one of :data:`PROJECT_FILES`; the current
    directory if none does."""
    here = os.path.abspath(os.fspath(start) if start is not None else os.getcwd())
    if os.path.isfile(here):
        here = os.path.dirname(here)
    while True:
        if any(os.path.exists(os.path.join(here, name)) for name in PROJECT_FILES):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return os.getcwd()
        here = parent


class _RunIds:
    """Launch ids: 64-bit, ordered by time, and all but certainly unique.

    Milliseconds since 2024-01-01 (41 bits), 10 bits of the process id, a
    12-bit sequence within the millisecond: the layout called a snowflake,
    which prints as 18 digits for the next years.  Two processes collide only
    if their pids agree in 10 bits and they draw the same sequence number in
    the same millisecond.  (Rejected: ``uuid4``: not
    ordered by time, and scripts compare the reference's numeric ids.)
    """

    EPOCH_MS = 1_704_067_200_000

    def __init__(self):
        self._lock = threading.Lock()
        self._last_ms = -1
        self._sequence = 0

    def next(self) -> int:
        with self._lock:
            now_ms = int(time.time() * 1000) - self.EPOCH_MS
            if now_ms <= self._last_ms:  # same millisecond, or the clock stepped back
                now_ms = self._last_ms
                self._sequence = (self._sequence + 1) & 0xFFF
                if self._sequence == 0:
                    now_ms += 1  # 4096 ids in one millisecond: borrow the next one
            else:
                self._sequence = 0
            self._last_ms = now_ms
            return (now_ms << 22) | ((os.getpid() & 0x3FF) << 12) | self._sequence


_ids = _RunIds()
_counter_lock = threading.Lock()  # experiments made in several threads take distinct numbers


def _default_user() -> str:
    for variable in ("ML_DASH_USER", "USER"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container with an unnamed uid)
        return "user"


class _LaunchDefaults(type):
    """``RUN.prefix = "..."`` checks the template's braces and field names at
    once, so a typo is named where it was written, not at some later
    ``Experiment()``."""

    def __setattr__(cls, name, value):
        if name in TEMPLATE_FIELDS and templates.is_template(value):
            templates.check_fields(value, FIELDS + DERIVED)
        elif name == "prefix":
            check_prefix(value)
        super().__setattr__(name, value)


class RUN(metaclass=_LaunchDefaults):
    """The settings an experiment's prefix is made of (class attributes: the
    defaults; an instance: one experiment's expanded copy)."""

    FIELDS = FIELDS
    DERIVED = DERIVED

    user: str = _default_user()
    """``ML_DASH_USER``, else ``USER``, else the login name."""
    project: str = "{user}/scratch"
    """The first segments of the default prefix; once expanded, the prefix's second segment."""
    prefix: str = os.environ.get("ML_DASH_PREFIX") or "{project}/{now:%Y/%m-%d}/{path_stem}/{job_name}"
    """The prefix or template of the next ``Experiment()`` made without one."""
    now: datetime = datetime.now()
    """When ml_dash was imported: the same for every experiment of the launch."""
    id: int | None = None
    """The launch id: made when a template asks for ``{id}``, else when the run starts."""
    entry: str | None = None
    """The script (or folder) the run comes from; default the ``__main__`` script."""
    project_root: str | None = None
    """Where ``path_stem`` is measured from; default :func:`find_project_root` of ``entry``."""
    path_stem: str | None = None
    """``entry`` relative to ``project_root``, without its extension (``experiments/train``)."""
    job_counter: int | None = 1
    """The number the next template with ``{job_counter}`` takes (and then counts up); on an
    instance, the number it took (None if its prefix has used none)."""
    job_name: str = "{now:%H.%M.%S}/{job_counter:03d}"
    owner: str | None = None
    name: str | None = None
    system_metrics: bool | float = False
    """Sample the ``system`` stream while a run is open: True (every 5 s) or an interval in
    seconds (see ``ml_dash.system_metrics``)."""
    context: bool = True
    """Record where a run comes from (git state, command line, versions) when it starts
    (see ``ml_dash.run_context``)."""
    capture_console: bool = False
    """Store what a run prints to stdout and stderr as log lines (see ``ml_dash.console``)."""
    _counter_pending: bool  # True until this instance takes its job_counter

    def __init__(self, **fields: Any) -> None:
        unknown = sorted(set(fields) - set(self.FIELDS))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unknown settings {unknown}; the "
                            f"settings are {list(self.FIELDS)}")
        for name in self.FIELDS:
            object.__setattr__(self, name, fields.get(name, getattr(type(self), name)))
        object.__setattr__(self, "owner", None)
        object.__setattr__(self, "name", None)
        # Taken from RUN's counter when a template first uses it, so the numbers
        # count the runs that show them.  (Rejected: every instance takes one, as
        # the reference does: a literal-prefix experiment made in between would
        # then leave a gap in a sweep's 001, 002, ...)
        object.__setattr__(self, "_counter_pending", "job_counter" not in fields)
        if self._counter_pending:
            object.__setattr__(self, "job_counter", None)
        self._set_prefix(self.prefix)

    # -- derived fields ----------------------------------------------------------------

    @property
    def date(self) -> str:
        """``now`` as ``YYYYMMDD``."""
        return self._now().strftime("%Y%m%d")

    @property
    def datetime_str(self) -> str:
        """``now`` as ``YYYYMMDD.HHMMSS``."""
        return self._now().strftime("%Y%m%d.%H%M%S")

    @property
    def folder(self) -> str:
        """The prefix (the reference's name for the experiment's folder path)."""
        return self.prefix

    def _now(self):
        if not isinstance(self.now, datetime):
            raise ConfigurationError(f"RUN.now must be a datetime, got {type(self.now).__name__}")
        return self.now

    # -- setting the prefix ----------------------------------------------------------------

    def __setattr__(self, name, value):
        if name in ("prefix", "folder"):
            self._set_prefix(value)
        elif name in ("owner", "project", "name") and self.prefix is not None:
            raise AttributeError(
                f"run.{name} is a segment of the prefix {self.prefix!r}; set run.prefix instead")
        else:
            object.__setattr__(self, name, value)

    def _set_prefix(self, value):
        """Expand ``value`` (a prefix or template), check it, then take it.

        A refused one leaves this instance's prefix and RUN's counter as they were.
        """
        pending = self._counter_pending
        try:
            if templates.is_template(value):
                expanded = templates.expand(value, self._field, self.FIELDS + self.DERIVED,
                                            self._unset_hint, TEMPLATE_FIELDS)
                try:
                    segments = check_prefix(expanded)
                except ConfigurationError as exc:
                    raise ConfigurationError(
                        f"prefix template {value!r} expands to {expanded!r}, which is not a "
                        f"prefix: {exc}") from None
            else:
                segments = check_prefix(value)
            self._take_prefix(segments)
        except BaseException:
            if pending and not self._counter_pending:  # the number taken goes back...
                taken = self.job_counter
                object.__setattr__(self, "_counter_pending", True)
                object.__setattr__(self, "job_counter", None)
                with _counter_lock:
                    if isinstance(taken, int) and RUN.job_counter == taken + 1:  # ...unless another took one since
                        RUN.job_counter = taken
            raise

    def _take_prefix(self, segments):
        """Make ``segments`` this instance's prefix (overridden by ``exp.run``)."""
        object.__setattr__(self, "prefix", "/".join(segments))
        object.__setattr__(self, "owner", segments[0])
        object.__setattr__(self, "project", segments[1])
        object.__setattr__(self, "name", segments[-1])

    def _field(self, name):
        """A template field's value; ``id`` and ``path_stem`` are made when first asked for."""
        if name == "id" and self.id is None:
            object.__setattr__(self, "id", _ids.next())
        elif name == "job_counter" and self._counter_pending:
            with _counter_lock:
                taken = RUN.job_counter
                RUN.job_counter = taken + 1 if isinstance(taken, int) else 1
            object.__setattr__(self, "job_counter", taken)
            object.__setattr__(self, "_counter_pending", False)
        elif name in ("path_stem", "project_root") and self.path_stem is None:
            self._find_path_stem()
        return getattr(self, name)

    @staticmethod
    def _unset_hint(name):
        if name in ("owner", "name"):
            return ("it is a segment of the current prefix, so it can be used when a prefix "
                    "is replaced (exp.run.prefix = ...), not in the first one")
        return f"set it (RUN.{name} = ... or a keyword of Experiment()) or leave it out"

    def _new_id(self):
        """Give this launch its id if no template has asked for one yet."""
        if self.id is None:
            object.__setattr__(self, "id", _ids.next())
        return self.id

    def _find_path_stem(self):
        entry = os.path.abspath(os.fspath(self.entry if self.entry is not None else _main_script()))
        root = os.path.abspath(os.fspath(self.project_root or find_project_root(entry)))
        relative = os.path.relpath(entry, root)
        if relative == "." or relative.startswith(".." + os.sep) or relative == "..":
            relative = os.path.basename(entry)  # the root itself, or outside it: its own name
        if not os.path.isdir(entry):
            relative = os.path.splitext(relative)[0]
        object.__setattr__(self, "project_root", root)
        object.__setattr__(self, "path_stem", relative.replace(os.sep, "/"))

    def __repr__(self):
        return f"<{type(self).__name__} {self.prefix}>"


def _main_script():
    """The script Python runs (``python train.py``), or the current directory
    in an interactive session."""
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    return script if script and os.path.exists(script) else os.getcwd()  # not "<stdin>"
