"""A run's launch history: one entry per ``run.start()``, kept in its experiment record.

Re-running a script with the same prefix appends to the run (as the
reference package does); each launch is recorded so that a plot whose step
jumps back to 0 can be explained: ``{"startedAt", "endedAt", "status",
"pid", "host", "command"}`` (times in POSIX seconds, ``command`` the
process's ``sys.argv`` as one shell-quoted line, cut at
:data:`MAX_COMMAND` characters).  A launch that never ended (its process
was killed) is marked ``STALE`` when the next launch starts: that one holds
the writer lock, so the earlier process is gone.

The history is bounded, not compacted: the record keeps the first launch
and the last ``MAX_LAUNCHES - 1``, and ``launchCount`` counts them all.
A run relaunched 10,000 times by a benchmark harness keeps a record of at
most ``MAX_LAUNCHES`` entries (about 25 KB), rewritten at each start and
end.  (Rejected: one LMDB record per launch: unbounded growth for a
harness, and a second place that the listing would have to read.)

A ``FAILED`` launch that ended by an exception records it: the record's
``error`` is ``{"type", "message", "traceback"}`` of the last launch (cut
at :data:`MAX_TRACEBACK` characters, the innermost frames kept), and the
launch entry carries ``"error": "Type: message"`` (short).
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import traceback

MAX_LAUNCHES = 100  # entries kept: the first launch and the latest ones
MAX_COMMAND = 1000  # characters of a launch's command line
MAX_MESSAGE = 2000  # characters of an exception's message
MAX_TRACEBACK = 20_000  # characters of a traceback, its end kept
STALE = "STALE"


def started(record: dict, now: float) -> dict:
    """The record of a run starting a launch at ``now``: history extended, first start kept."""
    launches = [dict(entry) for entry in record.get("launches") or []]
    for entry in launches:
        if entry.get("status") == "RUNNING":  # its process died: this one holds the lock
            entry["status"] = STALE
    launches.append({"startedAt": now, "endedAt": None, "status": "RUNNING", "pid": os.getpid(),
                     "host": socket.gethostname(), "command": command_line()})
    if len(launches) > MAX_LAUNCHES:
        launches = launches[:1] + launches[-(MAX_LAUNCHES - 1):]
    out = dict(record, launches=launches, launchCount=int(record.get("launchCount") or 0) + 1)
    out.pop("error", None)  # the error of an earlier launch is in its history entry
    out["startedAt"] = record.get("startedAt") or now
    return out


def ended(record: dict, status: str, now: float, error: BaseException | None = None) -> dict:
    """The record of a run whose current launch ends with ``status`` at ``now``."""
    out = dict(record, status=status, endedAt=now)
    launches = [dict(entry) for entry in record.get("launches") or []]
    if launches:
        launches[-1].update(endedAt=now, status=status)
    if error is not None and status == "FAILED":
        out["error"] = error_of(error)
        if launches:
            launches[-1]["error"] = _cut(f"{type(error).__name__}: {_message(error)}", 200)
    out["launches"] = launches
    return out


def error_of(error: BaseException) -> dict:
    """``{"type", "message", "traceback"}`` of an exception, as text that JSON can hold."""
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ in ("builtins", "__main__") \
        else f"{kind.__module__}.{kind.__qualname__}"
    lines = "".join(traceback.format_exception(kind, error, error.__traceback__))
    if len(lines) > MAX_TRACEBACK:
        lines = "...\n" + lines[-MAX_TRACEBACK:]
    return {"type": name, "message": _cut(_text(_message(error)), MAX_MESSAGE),
            "traceback": _text(lines)}


def _message(error: BaseException) -> str:
    # An exception whose __str__ raises must not keep the run from closing as FAILED.
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - anything its __str__ raised
        return f"<{type(error).__name__} whose str() raised>"


def command_line() -> str:
    """This process's ``sys.argv`` as one shell line, cut at :data:`MAX_COMMAND` characters."""
    try:
        line = shlex.join(str(arg) for arg in sys.argv)
    except Exception:  # noqa: BLE001 - sys.argv replaced by something odd: record what we can
        line = repr(sys.argv)
    return _cut(_text(line), MAX_COMMAND)


def _text(text: str) -> str:
    # Bytes of argv that are not UTF-8 come as lone surrogates, which print() and JSON
    # readers in other languages refuse: shown as U+FFFD instead.
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
