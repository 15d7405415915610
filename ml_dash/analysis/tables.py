"""Tables for pandas and Arrow: one stream, or many runs in one long table.

pandas and pyarrow are optional (extras ``pandas`` and ``arrow``): the
store itself needs only numpy, and a training job should not pull them in.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np

from ..arrays import Labels, arrow_table, frame, require
from ..errors import ColumnNotFoundError, StorageError, StreamNotFoundError
from ..names import ROOT_EXPORT, absent_streams, did_you_mean, stream_label
from ..paths import resolve_root
from ..storage import DATA_FILE
from ..view import load
from . import listing


def runs_table(pattern: str | None = None, *, dash_root: str | None = None, streams: list | None = None,
               keys: list | None = None, to: str = "pandas", params: bool | list | None = None,
               where: Any = None) -> Any:
    """One long table of many runs: ``run, stream, index, _ts, keys...``.

    ``pattern`` selects runs as in :func:`list_experiments`; ``streams``
    (names, None for the root) and ``keys`` restrict what is taken (default
    all).  A key a stream lacks is NaN.  Typos raise, with the close
    matches: a ``pattern`` that matches no run (``FileNotFoundError``), a
    stream no selected run has (``StreamNotFoundError``), a key no stream
    taken has (``ColumnNotFoundError``); a stream that only some runs have
    gives a ``RuntimeWarning`` naming the runs that lack it.  The root stream is named ``""``.
    A run deleted while the table is built is left out; so is one listed as
    ``UNREADABLE`` (damaged), with a ``RuntimeWarning`` naming it.
    ``to``: ``"pandas"`` (a DataFrame with categorical ``run`` and
    ``stream``), ``"arrow"`` (a Table with dictionary columns) or
    ``"numpy"`` (a dict of arrays, ``run`` and ``stream`` as object arrays).
    ``params``: True adds a column ``params.KEY`` per flat param key of the
    runs taken, a list adds those keys; each row holds its run's value (a
    number as float64, NaN where a run lacks it; any other value as text,
    JSON for lists, None where absent).  ``where`` selects runs as in
    :func:`list_experiments`.
    """
    if to not in ("pandas", "arrow", "numpy"):
        raise ValueError(f"to={to!r}: use 'pandas', 'arrow' or 'numpy'")
    if to != "numpy":  # before any run is read: a missing extra is said at once
        require(*(("pandas", "pandas") if to == "pandas" else ("pyarrow", "arrow")))
    runs = listing.list_experiments(dash_root, pattern, where=where)
    if pattern and not runs and where is None:
        raise FileNotFoundError(_no_match(pattern, dash_root))
    wanted = None if streams is None else {s or None for s in streams}
    if wanted is not None:
        _check_streams(wanted, [run for run in runs if run["status"] != "UNREADABLE"])
    parts: list = []
    labels: dict = {}  # (run code, stream code, {key: column})
    order = ["_ts"]
    seen: set = set()  # every column of the streams taken: a key in none of them is a typo
    for run in runs:
        if run["status"] == "UNREADABLE":
            warnings.warn(f"ml_dash.runs_table: left out {run['prefix']}: {run['error']}",
                          RuntimeWarning, stacklevel=2)
            continue
        try:
            taken = _run_columns(load(run["prefix"], dash_root=dash_root), run, wanted, keys, seen)
        except (FileNotFoundError, StorageError):
            if os.path.exists(os.path.join(run["path"], DATA_FILE)):
                raise
            continue  # deleted since it was listed: as if listed a moment later
        for name, columns in taken:
            order.extend(k for k in columns if k not in order)
            parts.append((labels.setdefault(run["prefix"], len(labels)),
                          labels.setdefault(("stream", name), len(labels)), columns))
    absent = [key for key in keys or () if key not in seen]
    if absent and parts:
        hint = did_you_mean(absent[0], sorted(seen - {"_ts"}))
        raise ColumnNotFoundError(
            f"runs_table: no stream taken has the key {absent[0]!r}"
            f"{' (' + hint + ')' if hint else ''}; their keys are {sorted(seen - {'_ts'})}")
    return _assemble(parts, labels, order, to, _param_columns(runs, params))


def _param_columns(runs, params):
    """``{"params.KEY": {prefix: value}}`` of the keys ``params`` asks for."""
    if not params:
        return {}
    readable = [run for run in runs if run["status"] != "UNREADABLE"]
    chosen = list(params) if isinstance(params, (list, tuple)) else \
        sorted({key for run in readable for key in run["params"]})
    return {f"params.{key}": {run["prefix"]: run["params"].get(key) for run in readable}
            for key in chosen}


def _per_row(by_run, runs, run_codes):
    """One run's param value on each of its rows: float64 when every value is a number."""
    values = [by_run.get(prefix) for prefix in runs]
    if all(v is None or type(v) in (int, float) for v in values):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=float)[run_codes]
    text = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
    return np.array(text, dtype=object)[run_codes]


def _no_match(pattern, dash_root):
    """Why ``pattern`` selects nothing: the folder searched and the close prefixes."""
    root = os.path.abspath(resolve_root(dash_root))
    known = [run["prefix"] for run in listing.list_experiments(dash_root)]
    hint = did_you_mean(pattern.strip("/"), known, quote=str, cutoff=0.5, join=", ")
    return (f"runs_table: no run matches {pattern!r} under {root!r}"
            f"{'; ' + hint if hint else ''}")


def _check_streams(wanted, runs):
    """Refuse a stream no run has (a typo); warn naming the runs that lack one some have."""
    having = {name: [run["prefix"] for run in runs if any(s["name"] == name for s in run["streams"])]
              for name in wanted}
    # the root always exists, maybe empty
    nowhere = sorted((name for name, found in having.items() if not found and name), key=str)
    if nowhere and runs:
        names = {s["name"] for run in runs for s in run["streams"]}
        raise StreamNotFoundError(absent_streams(nowhere, names, f"any of the {len(runs)} runs"))
    for name, found in sorted(having.items(), key=lambda item: str(item[0])):
        if found and len(found) < len(runs):
            lacking = [run["prefix"] for run in runs if run["prefix"] not in found]
            shown = ", ".join(lacking[:5]) + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
            warnings.warn(f"ml_dash.runs_table: {stream_label(name)} is in {len(found)} of "
                          f"{len(runs)} runs; not in {shown}", RuntimeWarning, stacklevel=3)


def _run_columns(view, run, wanted, keys, seen):
    """``[(stream name, {key: copied column})]`` of one listed run; adds the
    stream's keys to ``seen``."""
    out = []
    with view:
        for entry in run["streams"]:
            name = entry["name"]
            if wanted is not None and name not in wanted:
                continue
            stream = view.metrics(name)
            available = stream.keys()
            seen.update(available)
            taken = [k for k in (keys or available) if k in available]
            # Copies: the view's maps are closed with the view.
            out.append((name, {k: np.array(v) for k, v in stream.columns("_ts", *taken).items()}))
    return out


def _assemble(parts, labels, order, to, param_columns):
    total = sum(len(p[2]["_ts"]) for p in parts)
    runs = [label for label in labels if not isinstance(label, tuple)]
    names = [label[1] for label in labels if isinstance(label, tuple)]
    run_code = {labels[r]: i for i, r in enumerate(runs)}
    stream_code = {labels[("stream", s)]: i for i, s in enumerate(names)}
    run_codes = np.empty(total, np.int32)
    stream_codes = np.empty(total, np.int32)
    index = np.empty(total, np.int64)
    out = {key: np.full(total, np.nan) for key in order}
    at = 0
    for run, stream, columns in parts:
        length = len(columns["_ts"])
        run_codes[at:at + length] = run_code[run]
        stream_codes[at:at + length] = stream_code[stream]
        index[at:at + length] = np.arange(length)
        for key, values in columns.items():
            out[key][at:at + length] = values
        at += length
    for name, by_run in param_columns.items():
        out[name] = _per_row(by_run, runs, run_codes)
    stream_names = [ROOT_EXPORT if s is None else s for s in names]
    if to == "numpy":
        return {"run": np.array(runs, dtype=object)[run_codes],
                "stream": np.array(stream_names, dtype=object)[stream_codes],
                "index": index, **out}
    run_col, stream_col = Labels(run_codes, runs), Labels(stream_codes, stream_names)
    if to == "arrow":
        return arrow_table({"run": run_col, "stream": stream_col, "index": index, **out})
    pd = require("pandas", "pandas")
    return frame({"run": pd.Categorical.from_codes(run_codes, runs),
                  "stream": pd.Categorical.from_codes(stream_codes, stream_names),
                  "index": index, **out})
