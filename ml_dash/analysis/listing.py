"""Finding runs: ``list_experiments(dash_root, pattern)``.

A run is a directory under ``dash_root`` that holds an LMDB store.  Listing
reads, per run, the experiment record and each stream's last key: never any
history, so its cost does not depend on how long the runs are.
"""

from __future__ import annotations

import os
import re

from ..errors import MLDashError
from ..names import glob_matcher
from ..storage import DATA_FILE, held_flocks, overview_of, writer_alive
from ..timestamps import iso

_WILDCARDS = re.compile(r"[*?\[]")


def list_experiments(dash_root: str = ".dash", pattern: str | None = None) -> list[dict]:
    """One summary dict per run under ``dash_root`` whose prefix matches ``pattern``.

    ``pattern`` is a glob over prefixes: ``*`` and ``?`` stay within one
    segment, ``**`` spans any number of them (``"alice/proj/*"``,
    ``"**/lr-*"``); None lists every run.  Each dict holds ``prefix``,
    ``path``, ``status``, ``stale`` (a ``RUNNING`` run whose writer is gone),
    ``createdAt``, ``startedAt``, ``endedAt``, ``description``, ``tags``,
    ``streams`` (``[{"name", "count"}]``, the root stream named None),
    ``points`` and ``tracks`` (``[{"topic", "count"}]``).  A run that cannot be read is listed with status
    ``UNREADABLE`` and an ``error``.  Sorted by prefix.
    """
    root = os.path.realpath(dash_root)
    matches = glob_matcher(pattern) if pattern else None
    held = _Once(held_flocks)  # read when a first RUNNING run needs it, then kept
    out = []
    for prefix, directory in run_folders(root, pattern):
        if matches is None or matches(prefix):
            out.append(_summary(prefix, directory, held))
    out.sort(key=lambda run: run["prefix"])
    return out


def run_folders(root: str, pattern: str | None = None):
    """``(prefix, directory)`` of every store under ``root`` that ``pattern`` can match.

    Starts at the pattern's literal leading folders and, for a pattern
    without ``**``, goes no deeper than its number of segments.
    """
    base, depth = [], None
    if pattern:
        segments = pattern.strip("/").split("/")
        for segment in segments:
            if _WILDCARDS.search(segment) or segment in ("", ".", ".."):
                break
            base.append(segment)
        if "**" not in pattern:
            depth = len(segments)
    start = os.path.join(root, *base)
    stack = [(start, base)]
    while stack:
        directory, segments = stack.pop()
        if os.path.exists(os.path.join(directory, DATA_FILE)):
            if len(segments) >= 2:
                yield "/".join(segments), directory
            continue  # a run's own folders (columns/, files/) hold no runs
        if depth is not None and len(segments) >= depth:
            continue
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, segments + [entry.name]))


def _summary(prefix, directory, held):
    run = {"prefix": prefix, "path": directory}
    try:
        record, counts, tracks = overview_of(directory)
    except (FileNotFoundError, MLDashError, OSError) as exc:
        return dict(run, status="UNREADABLE", stale=False, error=str(exc), streams=[], points=0,
                    tracks=[])
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
        streams=streams,
        points=sum(counts.values()),
        tracks=[{"topic": topic, "count": count} for topic, count in sorted(tracks.items())],
    )
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
