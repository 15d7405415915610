"""Finding runs: ``list_experiments(dash_root, pattern)``.

A run is a directory under ``dash_root`` that holds an LMDB store.  Listing
reads, per run, the experiment record and each stream's last key: never any
history, so its cost does not depend on how long the runs are.
"""

from __future__ import annotations

import os

from ..errors import MLDashError
from ..names import glob_matcher
from ..paths import resolve_root, run_folders
from ..storage import held_flocks, overview_of, writer_alive
from ..timestamps import iso


def list_experiments(dash_root: str | None = None, pattern: str | None = None) -> list[dict]:
    """One summary dict per run under ``dash_root`` whose prefix matches ``pattern``.

    ``pattern`` is a glob over prefixes: ``*`` and ``?`` stay within one
    segment, ``**`` spans any number of them (``"alice/proj/*"``,
    ``"**/lr-*"``); None lists every run.  Each dict holds ``prefix``,
    ``path``, ``status``, ``stale`` (a ``RUNNING`` run whose writer is gone),
    ``createdAt``, ``startedAt`` (of the first launch), ``endedAt`` (of the
    last), ``description``, ``tags``, ``launches`` (how many times it was started),
    ``streams`` (``[{"name", "count"}]``, the root stream named None),
    ``points`` and ``tracks`` (``[{"topic", "count"}]``).  A run that cannot be read is
    listed with status ``UNREADABLE`` and an ``error``; a ``FAILED`` one that ended by an
    exception has an ``error`` too, ``"Type: message"``.  Sorted by prefix.  ``dash_root``
    defaults to ``$ML_DASH_ROOT``, else ``.dash``.
    """
    root = os.path.realpath(resolve_root(dash_root))
    matches = glob_matcher(pattern) if pattern else None
    held = _Once(held_flocks)  # read when a first RUNNING run needs it, then kept
    out = []
    for prefix, directory in run_folders(root, pattern):
        if matches is None or matches(prefix):
            out.append(_summary(prefix, directory, held))
    out.sort(key=lambda run: run["prefix"])
    return out


def _summary(prefix, directory, held):
    run = {"prefix": prefix, "path": directory}
    try:
        record, counts, tracks = overview_of(directory)
    except (FileNotFoundError, MLDashError, OSError) as exc:
        return dict(run, status="UNREADABLE", stale=False, error=str(exc), launches=0, streams=[],
                    points=0, tracks=[])
    writer = record.get("writer") or {}
    status = record.get("status")
    streams = [{"name": name or None, "count": count} for name, count in sorted(counts.items())]
    run.update(
        status=status,
        stale=status == "RUNNING" and not writer_alive(
            directory, writer.get("pid"), writer.get("host"), held=held()),
        createdAt=iso(record.get("createdAt")),
        startedAt=iso(record.get("startedAt")),
        endedAt=iso(record.get("endedAt")),
        description=record.get("description"),
        tags=record.get("tags") or [],
        launches=int(record.get("launchCount") or 0),
        streams=streams,
        points=sum(counts.values()),
        tracks=[{"topic": topic, "count": count} for topic, count in sorted(tracks.items())],
    )
    failure = record.get("error")
    if status == "FAILED" and isinstance(failure, dict):
        run["error"] = f"{failure.get('type')}: {failure.get('message')}"[:200]
    return run


class _Once:
    """A call made on first use and remembered: the flock table of the
    machine can be large, and only runs still marked RUNNING need it."""

    def __init__(self, function):
        self._function = function
        self._done = False
        self._value = None

    def __call__(self):
        if not self._done:
            self._value, self._done = self._function(), True
        return self._value
