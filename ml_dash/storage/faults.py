"""Named fault points inside the write path, for crash and I/O-error tests.

Set ``ML_DASH_FAULT=point[:action[:nth]]`` before starting Python to make the
``nth`` time (default 1) the write path passes ``point``, and every later
time, fail with ``action``:

``kill``
    SIGKILL the process there (the default): a crash at an exact moment.
``enospc`` / ``eio``
    raise ``OSError`` (disk full / I/O error) as the OS call at that point
    would; only at the points that make an OS call (all but
    ``before_columns`` and ``after_commit``, which are for kills).

Points, in the order a flush passes them:

``before_columns``   before the snapshot's column slots are written
``column_growth``    when a column file is about to grow (``posix_fallocate``)
``before_commit``    after the rows are put, before the LMDB commit
``after_commit``     after the commit, before the writer records the new counts
``map_growth``       when a full map is about to be doubled
``sync``             before the fsync of the periodic (or per-flush) sync

The variable is read once, at import; the write path then pays one test of
the module-level ``ACTIVE`` flag per point passed, and points are passed per
flush or per growth, never per logged value.  :func:`configure` sets the same
thing from Python (``configure(None)`` clears it, as freeing disk space
would).
"""

import errno
import os
import signal

POINTS = ("before_columns", "column_growth", "before_commit", "after_commit", "map_growth", "sync")
ACTIONS = ("kill", "enospc", "eio")
KILL_ONLY = ("before_columns", "after_commit")

ACTIVE = False
_point = None
_action = None
_remaining = 0


def configure(spec):
    """Arm the fault ``"point[:action[:nth]]"``, or disarm with None or ``""``."""
    global ACTIVE, _point, _action, _remaining
    if not spec:
        ACTIVE, _point, _action, _remaining = False, None, None, 0
        return
    parts = spec.split(":")
    point, action = parts[0], parts[1] if len(parts) > 1 and parts[1] else "kill"
    nth = int(parts[2]) if len(parts) > 2 else 1
    if point not in POINTS or action not in ACTIONS or nth < 1 or (
            action != "kill" and point in KILL_ONLY):
        raise ValueError(
            f"ML_DASH_FAULT={spec!r}: expected point[:action[:nth]] with point one of "
            f"{', '.join(POINTS)} and action one of {', '.join(ACTIONS)} "
            f"({', '.join(KILL_ONLY)} only kill)")
    ACTIVE, _point, _action, _remaining = True, point, action, nth


def hit(point, path=None):
    """Called at ``point`` when :data:`ACTIVE`; fails there if it is the armed one."""
    global _remaining
    if point != _point:
        return
    _remaining -= 1
    if _remaining > 0:
        return
    if _action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    code = errno.ENOSPC if _action == "enospc" else errno.EIO
    raise OSError(code, os.strerror(code), path)


configure(os.environ.get("ML_DASH_FAULT"))
