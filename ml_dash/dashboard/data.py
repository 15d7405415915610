"""What the dashboard's HTTP API answers, computed through the public read API.

Everything here reads through :func:`ml_dash.load` views and
:func:`ml_dash.list_experiments`: read transactions that never take the
writer lock, so a page open on a live run neither blocks nor slows its
training loop.  Nothing here writes into a store; the one file the
dashboard may write is a ``.dashrc`` (see :mod:`ml_dash.dashboard.dashrc`).

Charts are drawn from *buckets*: the points of the range on screen are cut
into at most one bucket per pixel column, and each bucket reports its
smallest, largest and last value, computed on the column's memory map.  The
band between min and max holds every point, so a single spike among
100,000,000 points is drawn at every zoom level; zooming asks for the
visible range again and the buckets shrink until each is one point.
(Rejected: sampling a fixed number of points per series, as TensorBoard
does, which drops spikes; and LTTB, which keeps the shape but not every
extreme of a bucket.)
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import ColumnNotFoundError, MLDashError
from ..names import glob_matcher
from ..paths import run_folders
from ..view import ExperimentView, load

MAX_WIDTH = 10_000  # buckets per request: more than any screen has pixel columns
MAX_TAIL = 100_000  # points per live-tail request
MAX_RUNS = 200  # runs in one aggregate request
VIEW_CACHE = 64  # views kept open between requests (each holds an LMDB environment)


class BadRequest(ValueError):
    """A request the API refuses, with the message the client is shown (HTTP 400)."""


class NotFound(LookupError):
    """A run, stream, key or file that does not exist (HTTP 404)."""


def _finite_list(values: np.ndarray) -> list:
    """``values`` as a JSON-ready list: NaN and infinities become None."""
    out = values.tolist()
    if not np.isfinite(values).all():
        out = [v if v == v and v not in (math.inf, -math.inf) else None for v in out]
    return out


def _stream_name(stream: str | None) -> str | None:
    return stream or None  # "" and None both mean the root stream


class Catalog:
    """The runs under one dash root, and their views, for the API's requests.

    Views are opened once and kept in a small LRU (opening one costs an
    LMDB environment open; keeping all would hold one per run).  Run
    summaries with params and last values are cached per run and read again
    only when the run's ``data.mdb`` changed (every commit changes it), so
    a refresh of a 10,000-run table costs one ``stat`` per unchanged run on
    top of the listing.
    """

    def __init__(self, dash_root: str) -> None:
        self.root = os.path.realpath(dash_root)
        self._views: OrderedDict[str, ExperimentView] = OrderedDict()
        self._summaries: dict[str, tuple[tuple[int, int] | None, dict]] = {}
        self._lock = threading.Lock()
        self._table_lock = threading.Lock()

    # -- views --------------------------------------------------------------------

    def view(self, prefix: str) -> ExperimentView:
        """The read-only view of ``prefix``, opened on first use."""
        if not isinstance(prefix, str) or not prefix.strip("/"):
            raise BadRequest(f"prefix must name a run, got {prefix!r}")
        with self._lock:
            view = self._views.get(prefix)
            if view is not None:
                self._views.move_to_end(prefix)
                return view
        try:
            view = load(prefix, dash_root=self.root)
        except FileNotFoundError as exc:
            raise NotFound(str(exc)) from None
        except (MLDashError, ValueError) as exc:
            raise BadRequest(str(exc)) from None
        with self._lock:
            self._views[prefix] = view
            while len(self._views) > VIEW_CACHE:
                _, old = self._views.popitem(last=False)
                old.close()
        return view

    def close(self) -> None:
        with self._lock:
            views, self._views = list(self._views.values()), OrderedDict()
        for view in views:
            view.close()

    # -- the runs table -----------------------------------------------------------

    def runs(self, pattern: str | None = None) -> list[dict]:
        """Every run matching ``pattern`` (a prefix glob, as ``list_experiments``
        takes): status, times, point counts, flattened params and last values."""
        matches = glob_matcher(pattern) if pattern else None
        with self._table_lock:  # a second caller waits for the first's reads instead of repeating them
            return self._runs(pattern, matches)

    def _runs(self, pattern: str | None, matches: Any) -> list[dict]:
        out = []
        seen = set()
        for prefix, directory in run_folders(self.root, pattern or None):
            if matches is not None and not matches(prefix):
                continue
            seen.add(prefix)
            out.append(self._summary(prefix, directory))
        if pattern is None:
            for gone in set(self._summaries) - seen:
                del self._summaries[gone]
        out.sort(key=lambda run: run["prefix"])
        return out

    def _summary(self, prefix: str, directory: str) -> dict:
        try:
            stat = os.stat(os.path.join(directory, "data.mdb"))
            signature = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            signature = None
        cached = self._summaries.get(prefix)
        if cached is not None and cached[0] == signature and signature is not None:
            summary = cached[1]
            if summary["status"] == "RUNNING":  # the writer may have died since: no commit says so
                stale = self._is_stale(prefix)
                summary = dict(summary, stale=stale, live=not stale)
            return summary
        summary = self._read_summary(prefix)
        self._summaries[prefix] = (signature, summary)
        return summary

    def _is_stale(self, prefix: str) -> bool:
        try:
            return self.view(prefix).stale
        except (NotFound, BadRequest, MLDashError, OSError):
            return False

    def _read_summary(self, prefix: str) -> dict:
        """One run's row of the table, read through one view opened and closed here
        (not kept: a table of 10,000 runs would hold 10,000 environments)."""
        folder, _, name = prefix.rpartition("/")
        row: dict[str, Any] = {"prefix": prefix, "folder": folder, "name": name}
        try:
            with load(prefix, dash_root=self.root) as view:
                info = view.info
                streams = view.metrics.list_all()
                params = view.params.get(flatten=True)
                last = {}
                for stream in streams:
                    stream_name, count = stream["name"], stream.get("count", 0)
                    if not count:
                        continue
                    # The last row, not the columns: one read, where each column would be
                    # a mapping of its own (twice the time over 10,000 runs).
                    page = view.metrics(stream_name).read(start_index=count - 1, limit=1)["data"]
                    for key, value in (page[0]["data"] if page else {}).items():
                        if key != "_ts" and type(value) in (int, float) and math.isfinite(value):
                            last[key if stream_name is None else f"{stream_name}/{key}"] = float(value)
        except (FileNotFoundError, MLDashError, OSError, ValueError) as exc:
            return dict(row, status="UNREADABLE", stale=False, live=False, error=str(exc), streams=[],
                        points=0, params={}, last={}, tags=[], description=None,
                        createdAt=None, startedAt=None, endedAt=None)
        counts = [{"name": s["name"], "count": s.get("count", 0)} for s in streams]
        row.update(
            status=info.get("status"), stale=bool(info.get("stale")),
            live=info.get("status") == "RUNNING" and not info.get("stale"),
            createdAt=info.get("createdAt"), startedAt=info.get("startedAt"), endedAt=info.get("endedAt"),
            description=info.get("description"), tags=info.get("tags") or [],
            streams=counts, points=sum(s["count"] for s in counts),
            params=_jsonable(params), last=last,
        )
        return _jsonable(row)

    # -- one run ------------------------------------------------------------------

    def run(self, prefix: str) -> dict:
        """Everything the run page shows before its charts: info, streams, params, files."""
        view = self.view(prefix)
        info = self._summary(view.prefix, os.path.join(self.root, view.prefix))
        streams = []
        for stream in view.metrics.list_all():
            handle = view.metrics(stream["name"])
            streams.append({"name": stream["name"], "count": stream.get("count", 0), "keys": handle.keys()})
        files = [_file_entry(record) for record in view.files.list()]
        readme = None
        for entry in files:
            if entry["path"].strip("/").lower() == "readme.md":
                try:
                    readme = view.files(entry["path"].strip("/")).read_text()
                except (MLDashError, OSError, UnicodeDecodeError):
                    readme = None
                break
        record = view.info  # where the run comes from, and the exception of a failed one
        return {"info": info, "streams": streams, "params": _jsonable(view.params.get(flatten=True)),
                "files": files, "readme": readme,
                "context": _jsonable(record.get("context")), "error": _jsonable(record.get("error"))}

    # -- charts -------------------------------------------------------------------

    def _stream(self, prefix: str, stream: str | None):
        view = self.view(prefix)
        name = _stream_name(stream)
        if name not in view.metrics.names():
            raise NotFound(f"run {view.prefix!r} has no stream {name or '(root)'!r} with points")
        return view.metrics(name)

    def _column(self, handle, key: str, start: int, stop: int) -> np.ndarray:
        try:
            return handle.column(key, start, stop)
        except ColumnNotFoundError as exc:
            raise NotFound(str(exc)) from None

    def buckets(self, prefix: str, stream: str | None, keys: list[str], width: int,
                start: int | None = None, stop: int | None = None, x: str = "index") -> dict:
        """Min, max and last of each key per bucket of ``[start, stop)``; see the module doc."""
        handle = self._stream(prefix, stream)
        _check_width(width)
        count = len(handle)
        start = 0 if start is None else max(0, min(int(start), count))
        stop = count if stop is None else max(start, min(int(stop), count))
        keys = _keys_or_all(handle, keys)
        n = stop - start
        size = max(1, -(-n // width))  # points per bucket
        firsts = np.arange(start, stop, size, dtype=np.int64)
        lasts = np.minimum(firsts + size, stop) - 1
        series = {}
        for key in keys:
            values = self._column(handle, key, start, stop)
            low, high, last = bucket_extrema(values, size)
            series[key] = {"min": _finite_list(low), "max": _finite_list(high), "last": _finite_list(last)}
        return {"count": count, "start": start, "stop": stop, "exact": size == 1,
                "index": firsts.tolist(), "x": self._x_at(handle, x, lasts, start, stop), "series": series}

    def _x_at(self, handle, x: str, indices: np.ndarray, start: int, stop: int) -> list:
        if x in (None, "", "index"):
            return indices.tolist()
        column = self._column(handle, x, start, stop)
        return _finite_list(np.asarray(column[indices - start], dtype=np.float64))

    def tail(self, prefix: str, stream: str | None, keys: list[str], after: int,
             x: str = "index", limit: int = 5000) -> dict:
        """The points after index ``after``, for a live chart to append."""
        handle = self._stream(prefix, stream)
        if not 1 <= limit <= MAX_TAIL:
            raise BadRequest(f"limit must be between 1 and {MAX_TAIL}, got {limit}")
        count = len(handle)
        start = max(0, after + 1)
        stop = min(count, start + limit)
        keys = _keys_or_all(handle, keys)
        indices = np.arange(start, max(start, stop), dtype=np.int64)
        series = {key: _finite_list(np.asarray(self._column(handle, key, start, stop))) for key in keys}
        return {"count": count, "index": indices.tolist(),
                "x": self._x_at(handle, x, indices, start, stop) if len(indices) else [],
                "series": series}

    def aggregate(self, prefixes: list[str], stream: str | None, key: str, width: int,
                  x: str = "index") -> dict:
        """Mean, min, max and std across runs of ``key`` on one x grid of ``width`` bins."""
        _check_width(width)
        if not prefixes:
            raise BadRequest("prefixes must name at least one run")
        if len(prefixes) > MAX_RUNS:
            raise BadRequest(f"at most {MAX_RUNS} runs per aggregate, got {len(prefixes)}")
        curves = []
        for prefix in prefixes:
            handle = self._stream(prefix, stream)
            ys = np.asarray(self._column(handle, key, 0, len(handle)))
            if x in (None, "", "index"):
                xs = np.arange(len(ys), dtype=np.float64)
            else:
                xs = np.asarray(self._column(handle, x, 0, len(handle)))
            keep = np.isfinite(xs) & np.isfinite(ys)
            curves.append((xs[keep], ys[keep]))
        present = [c for c in curves if len(c[0])]
        empty = {"x": [], "mean": [], "min": [], "max": [], "std": [], "n": [], "runs": len(prefixes)}
        if not present:
            return empty
        low = min(float(c[0].min()) for c in present)
        high = max(float(c[0].max()) for c in present)
        span = high - low
        bins = width if span > 0 else 1
        means = np.full((len(present), bins), np.nan)
        for row, (xs, ys) in enumerate(present):
            at = np.zeros(len(xs), dtype=np.int64) if span == 0 else np.minimum(
                ((xs - low) / span * bins).astype(np.int64), bins - 1)
            sums = np.bincount(at, weights=ys, minlength=bins)
            counts = np.bincount(at, minlength=bins)
            with np.errstate(invalid="ignore", divide="ignore"):
                means[row] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        n = np.isfinite(means).sum(axis=0)
        filled = n > 0
        cols = means[:, filled]
        centres = low + (np.arange(bins)[filled] + 0.5) * (span / bins) if span > 0 else np.array([low])
        return {"x": _finite_list(centres), "mean": _finite_list(np.nanmean(cols, axis=0)),
                "min": _finite_list(np.nanmin(cols, axis=0)), "max": _finite_list(np.nanmax(cols, axis=0)),
                "std": _finite_list(np.nanstd(cols, axis=0)), "n": n[filled].tolist(), "runs": len(prefixes)}

    # -- logs and files -----------------------------------------------------------

    def logs(self, prefix: str, start: int = 0, limit: int = 200, level: str | None = None,
             query: str | None = None) -> dict:
        """A page of the run's log records, by level and by text in the message."""
        view = self.view(prefix)
        if not 1 <= limit <= 10_000:
            raise BadRequest(f"limit must be between 1 and 10000, got {limit}")
        try:
            page = view.logs.read(start_index=max(0, start), limit=limit, level=level or None)
        except (ValueError, TypeError) as exc:
            raise BadRequest(str(exc)) from None
        rows = page["data"]
        if query:
            needle = query.lower()
            rows = [row for row in rows if needle in str(row["message"]).lower()]
        return {"logs": _jsonable(rows), "hasMore": page["hasMore"],
                "next": page["endIndex"] + 1}

    def file(self, prefix: str, path: str) -> tuple[bytes, str]:
        """The bytes of a stored file and its name."""
        view = self.view(prefix)
        clean = str(path or "").strip("/")
        if not clean:
            raise BadRequest("path must name a file")
        try:
            handle = view.files(clean)
            if not handle.exists():
                raise NotFound(f"run {view.prefix!r} has no file {clean!r}")
            return handle.read_bytes(), clean.rpartition("/")[2]
        except (MLDashError, ValueError) as exc:
            raise BadRequest(str(exc)) from None


def bucket_extrema(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bucket of ``size`` consecutive points: smallest, largest and last value.

    NaN points (a point without the key) are skipped; a bucket of NaN alone
    gives NaN.  The full buckets are one reshaped view of the memory map,
    reduced with ``fmin``/``fmax`` (which skip NaN without the copy that
    ``nanmin`` makes); the last, shorter bucket is reduced on its own.
    (Not ``Stream.downsample(method="minmax")``: it returns the extreme points
    themselves, two per bucket in index order, not each bucket's min, max and
    last on fixed index edges that a zoom can ask for again.)
    """
    values = np.asarray(values, dtype=np.float64)
    if size <= 1:
        return values, values, values
    full = len(values) // size * size
    blocks = [values[:full].reshape(-1, size), values[full:].reshape(1, -1)]
    blocks = [block for block in blocks if block.size]
    if not blocks:
        empty = np.empty(0)
        return empty, empty, empty
    return (np.concatenate([np.fmin.reduce(block, axis=1) for block in blocks]),
            np.concatenate([np.fmax.reduce(block, axis=1) for block in blocks]),
            np.concatenate([_last_present(block) for block in blocks]))


def _last_present(block: np.ndarray) -> np.ndarray:
    """The last non-NaN value of each row (NaN for a row of NaN)."""
    last = np.array(block[:, -1])
    missing = np.flatnonzero(np.isnan(last))
    for row in missing:  # only rows whose last point lacks the key: rare in dense streams
        present = block[row][~np.isnan(block[row])]
        if len(present):
            last[row] = present[-1]
    return last


def _check_width(width: Any) -> None:
    if type(width) is not int or not 1 <= width <= MAX_WIDTH:
        raise BadRequest(f"width must be a whole number of buckets from 1 to {MAX_WIDTH}, got {width!r}")


def _keys_or_all(handle, keys: list[str]) -> list[str]:
    available = handle.keys()
    if not keys:
        return [k for k in available if k != "_ts"]
    for key in keys:
        if key not in available:
            raise NotFound(f"stream {handle.name or '(root)'!r} has no column {key!r}; "
                           f"its columns are {available}")
    return keys


def _file_entry(record: dict) -> dict:
    """A file record for the page: its folder kept, ``path`` the whole path."""
    entry = _jsonable(record)
    folder = (entry.get("path") or "").strip("/")
    return dict(entry, folder=folder, path="/".join(p for p in (folder, entry.get("filename") or "") if p))


def _jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold made plain: bytes and other objects as text,
    non-finite floats as None, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return str(value)
