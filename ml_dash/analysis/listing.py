"""Finding runs: ``list_experiments(dash_root, pattern, where=...)``.

A run is a directory under ``dash_root`` that holds an LMDB store.  Listing
reads, per run, the experiment record, params and each stream's last key
and last values: never any history, so its cost does not depend on how long
the runs are.  A run that has ended is read from the summary its writer
saved at close, while no commit has come since (see ``storage.run_summary``):
a few file reads instead of opening an LMDB environment.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import MLDashError
from ..names import glob_matcher
from ..paths import resolve_root, run_folders
from ..storage import held_flocks, run_summary, writer_alive
from ..timestamps import iso
from .filters import RunFilter


def list_experiments(dash_root: str | None = None, pattern: str | None = None, *,
                     where: str | Callable[[dict], Any] | None = None) -> list[dict]:
    """One summary dict per run under ``dash_root`` whose prefix matches ``pattern``.

    ``pattern`` is a glob over prefixes: ``*`` and ``?`` stay within one
    segment, ``**`` spans any number of them (``"alice/proj/*"``,
    ``"**/lr-*"``); None lists every run.  Each dict holds ``prefix``,
    ``path``, ``status``, ``stale`` (a ``RUNNING`` run whose writer is gone),
    ``createdAt``, ``startedAt`` (of the first launch), ``endedAt`` (of the
    last), ``description``, ``tags``, ``launches`` (how many times it was started),
    ``streams`` (``[{"name", "count"}]``, the root stream named None),
    ``points``, ``tracks`` (``[{"topic", "count"}]``), ``params`` (flat:
    ``{"model.depth": 4}``) and ``last``: the last value of each numeric key
    that is not NaN, ``"key"`` for the root stream and ``"stream/key"`` for
    the others (as ``buffer.peek`` names them).  A run that cannot be read is
    listed with status ``UNREADABLE`` and an ``error``; a ``FAILED`` one that ended by an
    exception has an ``error`` too, ``"Type: message"``.  Sorted by prefix.
    ``dash_root`` defaults to ``$ML_DASH_ROOT``, else ``.dash``.

    ``where`` keeps the runs it is true of: an expression such as
    ``"params.lr > 0.01 and status == 'COMPLETED'"`` (see
    :mod:`ml_dash.analysis.filters` for what it may hold; a param a run
    lacks is None, and a comparison of unlike types is false), or a callable
    given each run's dict.  A malformed expression raises ``ValueError``
    before any run is read.
    """
    keep = None if where is None else RunFilter(where)
    held = Once(held_flocks)  # read when a first RUNNING run needs it, then kept
    out = []
    for prefix, directory, summary in run_summaries(dash_root, pattern):
        run = listed(prefix, directory, summary, held)
        if keep is None or keep(run):
            out.append(run)
    return out


def run_summaries(dash_root: str | None, pattern: str | None) -> list[tuple]:
    """``(prefix, directory, summary)`` of each run matching ``pattern``, sorted by
    prefix: the summary as ``storage.run_summary`` gives it, or the exception that
    says why the run cannot be read (``ml_dash.sql`` builds its tables from these)."""
    root = os.path.realpath(resolve_root(dash_root))
    matches = glob_matcher(pattern) if pattern else None
    out = []
    with _collector_paused():
        for prefix, directory in run_folders(root, pattern):
            if matches is None or matches(prefix):
                try:
                    summary: Any = run_summary(directory)
                except (FileNotFoundError, MLDashError, OSError) as exc:
                    summary = exc
                out.append((prefix, directory, summary))
    out.sort(key=lambda run: run[0])
    return out


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector held off while summaries are decoded.

    Each summary is a dozen new dicts and lists that all live on, so the
    collector ran again and again over every object of the process (numpy,
    pyarrow, duckdb) and found nothing: 0.28 s of 1.09 s for a query over
    10,000 runs.  Nothing decoded here holds a cycle.  The collector is
    turned back on only if it was on, so a caller that turned it off keeps it off.
    (Rejected: ``gc.freeze()``, which would move the caller's objects out of
    reach of later collections too.)
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def listed(prefix: str, directory: str, summary: Any, held: Callable) -> dict:
    """The listing's dict of a run from its summary (or the exception reading it raised)."""
    run: dict[str, Any] = {"prefix": prefix, "path": directory}
    if isinstance(summary, Exception):
        return dict(run, status="UNREADABLE", stale=False, error=str(summary), launches=0, streams=[],
                    points=0, tracks=[], params={}, last={})
    record = summary["record"]
    writer = record.get("writer") or {}
    status = record.get("status")
    counts = {name or None: count for name, count in summary["streams"]}
    streams = [{"name": name, "count": count}
               for name, count in sorted(counts.items(), key=lambda item: item[0] or "")]
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
        tracks=[{"topic": topic, "count": count} for topic, count in sorted(summary["tracks"].items())],
        params=dict(sorted(summary["params"].items())),
        last={key if not name else f"{name}/{key}": value
              for name, values in sorted(summary["last"], key=lambda item: item[0] or "")
              for key, value in sorted(values.items())},
    )
    failure = record.get("error")
    if status == "FAILED" and isinstance(failure, dict):
        run["error"] = f"{failure.get('type')}: {failure.get('message')}"[:200]
    return run


class Once:
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
