"""Tables for pandas and Arrow: one stream, or many runs in one long table.

pandas and pyarrow are optional (extras ``pandas`` and ``arrow``): the
store itself needs only numpy, and a training job should not pull them in.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..arrays import Labels, arrow_table, frame, require
from ..errors import StorageError
from ..names import ROOT_EXPORT
from ..storage import DATA_FILE
from ..view import load
from . import listing


def runs_table(pattern: str | None = None, *, dash_root: str | None = None, streams: list | None = None,
               keys: list | None = None, to: str = "pandas") -> Any:
    """One long table of many runs: ``run, stream, index, _ts, keys...``.

    ``pattern`` selects runs as in :func:`list_experiments`; ``streams``
    (names, None for the root) and ``keys`` restrict what is taken (default
    all).  A key a stream lacks is NaN.  The root stream is named ``""``.
    A run deleted while the table is built is left out; so is one listed as
    ``UNREADABLE`` (damaged), with a ``RuntimeWarning`` naming it.
    ``to``: ``"pandas"`` (a DataFrame with categorical ``run`` and
    ``stream``), ``"arrow"`` (a Table with dictionary columns) or
    ``"numpy"`` (a dict of arrays, ``run`` and ``stream`` as object arrays).
    """
    if to not in ("pandas", "arrow", "numpy"):
        raise ValueError(f"to={to!r}: use 'pandas', 'arrow' or 'numpy'")
    wanted = None if streams is None else {s or None for s in streams}
    parts: list = []
    labels: dict = {}  # (run code, stream code, {key: column})
    order = ["_ts"]
    for run in listing.list_experiments(dash_root, pattern):
        if run["status"] == "UNREADABLE":
            warnings.warn(f"ml_dash.runs_table: left out {run['prefix']}: {run['error']}",
                          RuntimeWarning, stacklevel=2)
            continue
        try:
            taken = _run_columns(load(run["prefix"], dash_root=dash_root), run, wanted, keys)
        except (FileNotFoundError, StorageError):
            if os.path.exists(os.path.join(run["path"], DATA_FILE)):
                raise
            continue  # deleted since it was listed: as if listed a moment later
        for name, columns in taken:
            order.extend(k for k in columns if k not in order)
            parts.append((labels.setdefault(run["prefix"], len(labels)),
                          labels.setdefault(("stream", name), len(labels)), columns))
    return _assemble(parts, labels, order, to)


def _run_columns(view, run, wanted, keys):
    """``[(stream name, {key: copied column})]`` of one listed run."""
    out = []
    with view:
        for entry in run["streams"]:
            name = entry["name"]
            if wanted is not None and name not in wanted:
                continue
            stream = view.metrics(name)
            available = stream.keys()
            taken = [k for k in (keys or available) if k in available]
            # Copies: the view's maps are closed with the view.
            out.append((name, {k: np.array(v) for k, v in stream.columns("_ts", *taken).items()}))
    return out


def _assemble(parts, labels, order, to):
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
