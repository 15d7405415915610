"""Text logs of a run: printed as they are logged, stored, and read back.

``exp.log("epoch done", level="info", loss=0.3)`` or
``exp.logs.info("epoch done", loss=0.3)`` prints ``[INFO] epoch done loss=0.3``
at once (error and fatal to stderr) and stages a record, committed with the
next flush like any point.  Records are numbered from 0 in the order they
were logged, across threads: the number is taken, the line printed and the
record staged under one lock, so printed order, stored order and numbering
agree, and a flush always commits a contiguous run of numbers.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from enum import Enum
from typing import Any

from .storage import records
from .stream import check_range
from .timestamps import iso
from .values import _NOT_UTF8, convert_for, unencodable


class _NoMessage:
    """The default message of ``exp.log()``: left out, which None is not (None logs "None")."""

    def __repr__(self) -> str:
        return "<no message>"


NO_MESSAGE: Any = _NoMessage()


class LogLevel(str, Enum):
    """The levels by name, as the reference package exports them.

    A ``str`` enum, so ``level=LogLevel.WARN`` and ``level=LogLevel.WARN.value``
    both work (the reference package takes only the second).
    """

    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"
    FATAL = "fatal"

    @classmethod
    def validate(cls, level: str) -> str:
        """The stored (lowercase) name of ``level``, or ``ValueError``."""
        return level_of(level)


LEVELS = tuple(level.value for level in LogLevel)
_ALIASES = {"warning": "warn"}
_TO_STDERR = frozenset(("error", "fatal"))


def level_of(level):
    """The stored (lowercase) name of ``level``, or ``ValueError``."""
    name = str.lower(level) if isinstance(level, str) else level  # a LogLevel: its value
    name = _ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)} (or 'warning')")
    return name


def _merged(metadata, extra):
    """``metadata`` (a dict, or ``TypeError``) with ``extra`` over it; not converted yet."""
    if metadata is None:
        return extra
    if not isinstance(metadata, dict):
        raise TypeError(f"log metadata must be a dict, got {type(metadata).__name__}")
    return {**metadata, **extra}


def _metadata(metadata, extra):
    """:func:`_merged`, each value converted for the store (``TypeError`` naming the key)."""
    merged = _merged(metadata, extra)
    return {key: convert_for("log metadata", key, value, 1) for key, value in merged.items()}


def _encode(record):
    """The stored bytes of a log record, or a ``TypeError`` saying which text cannot be stored."""
    try:
        return records.encode(record)
    except UnicodeEncodeError:
        where = unencodable(record[2], "message") or unencodable(record[3], "metadata")
        raise TypeError(f"log: {where!r} {_NOT_UTF8}; the record was not stored") from None


_echoing = threading.local()  # .active while this thread prints a log line


def echoing() -> bool:
    """True while this thread prints a log line: console capture (``ml_dash.console``)
    leaves those out, as they are stored already."""
    return getattr(_echoing, "active", False)


def _print(line, out):
    _echoing.active = True
    try:
        print(line, file=out, flush=True)
    except UnicodeEncodeError:  # a terminal that cannot show it: the record is stored anyway
        encoding = getattr(out, "encoding", None) or "ascii"
        print(line.encode(encoding, "backslashreplace").decode(encoding), file=out, flush=True)
    finally:
        _echoing.active = False


def _line(level, message, metadata):
    parts = [f"[{level.upper()}] {message}"]
    parts += [f"{key}={value}" for key, value in metadata.items()]
    return " ".join(parts)


class Logs:
    """``exp.logs`` of a live experiment or of a view: ``info()``... and ``read()``."""

    def __init__(self, owner: Any) -> None:
        self._exp = owner
        self._lock = threading.Lock()
        self._session = None  # the session ``_next`` was loaded in
        self._next = 0

    def read(self, start_index: int = 0, limit: int = 1000, level: str | None = None) -> dict:
        """A page of committed log records from ``start_index`` on.

        Returns ``{"data", "startIndex", "endIndex", "total", "hasMore"}``
        like ``metrics.read()``; each row is ``{"index", "timestamp", "level",
        "message", "metadata"}``.  ``level`` keeps only records of that level
        (``endIndex`` is then the index of the last row returned).
        """
        check_range(start_index, limit)
        wanted = None if level is None else level_of(level)
        rows, has_more = records.log_page(self._exp._reader(), start_index, limit, wanted)
        data = [{"index": index, "timestamp": iso(ts), "level": name, "message": message,
                 "metadata": metadata or {}}
                for index, (ts, name, message, metadata) in rows]
        return {
            "data": data,
            "startIndex": start_index,
            "endIndex": data[-1]["index"] if data else start_index - 1,
            "total": len(data),
            "hasMore": has_more,
        }

    def log(self, message: Any, level: str | None = "info", metadata: dict | None = None,
            _flush: bool = False, _echo: bool = True, **extra: Any) -> Logs:
        """Print and stage one record; ``_flush=True`` also commits at once.

        ``_echo=False`` stores it without printing it: for lines that were
        printed already (console capture, the traceback of a failed run).

        ``metadata`` and ``extra`` are merged (``extra`` wins) and stored as
        the record's metadata.  ``level=None`` is ``"info"``, as in the
        reference package.
        """
        session = self._exp._open_session()
        level = level_of("info" if level is None else level)
        metadata = _metadata(metadata, extra)
        message = str(message)
        out = sys.stderr if level in _TO_STDERR else sys.stdout
        with self._lock:
            if self._session is not session:
                self._next = records.next_log_index(session.reader)
                self._session = session
            index = self._next
            record = _encode([time.time(), level, message, metadata])
            if _echo:
                _print(_line(level, message, metadata), out)
            self._next += 1
            session.stage_record(records.log_put(index, record))
        if _flush:
            session.flush()
        return self

    # The level methods take ``metadata=`` as log() does, merged with the
    # keywords: the reference package's docs write exp.logs.info("...",
    # metadata={...}), though its code stores that dict as a field named
    # "metadata".  Rejected: keeping its nesting, which the docs contradict.

    def debug(self, message: Any, metadata: dict | None = None, **extra: Any) -> Logs:
        return self.log(message, "debug", _merged(metadata, extra))

    def info(self, message: Any, metadata: dict | None = None, **extra: Any) -> Logs:
        return self.log(message, "info", _merged(metadata, extra))

    def warn(self, message: Any, metadata: dict | None = None, **extra: Any) -> Logs:
        return self.log(message, "warn", _merged(metadata, extra))

    warning = warn

    def error(self, message: Any, metadata: dict | None = None, **extra: Any) -> Logs:
        return self.log(message, "error", _merged(metadata, extra))

    def fatal(self, message: Any, metadata: dict | None = None, **extra: Any) -> Logs:
        return self.log(message, "fatal", _merged(metadata, extra))

    def builder(self, metadata: dict | None = None, extra: dict | None = None) -> LogBuilder:
        """What ``exp.log()`` without a message gives: see :class:`LogBuilder`."""
        self._exp._open_session()  # raises: the run is not started, or read-only
        return LogBuilder(self, _metadata(metadata, extra or {}))

    def __repr__(self) -> str:
        return f"<Logs of {self._exp.prefix}>"


class LogBuilder:
    """``exp.log(epoch=1).info("done")``: metadata first, then the level and the message.

    The reference package's older fluent style, deprecated there and here
    (a ``DeprecationWarning`` when made); ``exp.logs.info("done", epoch=1)``
    stores the same record.  Not a second ``Logs``: records are numbered by
    the one ``exp.logs``, so this only hands its calls on.
    """

    def __init__(self, logs: Logs, metadata: dict) -> None:
        warnings.warn("exp.log() without a message is deprecated; use "
                      "exp.logs.info(message, **metadata) instead", DeprecationWarning, stacklevel=4)
        self._logs = logs
        self._metadata = metadata  # checked and converted already: a bad value raised at exp.log()

    def _write(self, level: str, message: Any, metadata: dict | None, extra: dict) -> Logs:
        return self._logs.log(message, level, {**self._metadata, **_merged(metadata, extra)})

    def debug(self, message: Any, metadata: dict | None = None, **extra: Any) -> Logs:
        return self._write("debug", message, metadata, extra)

    def info(self, message: Any, metadata: dict | None = None, **extra: Any) -> Logs:
        return self._write("info", message, metadata, extra)

    def warn(self, message: Any, metadata: dict | None = None, **extra: Any) -> Logs:
        return self._write("warn", message, metadata, extra)

    warning = warn

    def error(self, message: Any, metadata: dict | None = None, **extra: Any) -> Logs:
        return self._write("error", message, metadata, extra)

    def fatal(self, message: Any, metadata: dict | None = None, **extra: Any) -> Logs:
        return self._write("fatal", message, metadata, extra)
