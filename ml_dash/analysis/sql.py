"""SQL over runs: ``ml_dash.sql("select prefix, max(loss) from metrics group by prefix")``.

DuckDB (the ``sql`` extra) runs the query; ml_dash hands it the tables the
query names, as Arrow tables:

- ``runs``: one row per run (what :func:`list_experiments` lists);
- ``params``: one row per run and flat param key (``prefix, key, value,
  number, type``) and ``params_wide``: one row per run, one column per key;
- ``metrics``: one row per point of every stream (``prefix, stream, index,
  _ts`` and one column per numeric key: the union of the runs' keys);
- ``logs``: one row per log line.

Only what the query names is built: the tables and, in ``metrics``, the key
columns (every name DuckDB's parse tree of the query mentions, or all of
them for a ``*``).  Column data is not copied:
each Arrow array is built over the run's memory-mapped column, and only a
validity bitmap (NaN, a point without the key, is NULL) is computed.  The
prefix and stream of a stream's points are a dictionary of one value.

(Rejected: DuckDB replacement scans of Python objects, which find names
only among the caller's variables; registering every table eagerly, which
opens every run for a question about params; and a DuckDB table function
reading LMDB rows, which would decode each point in Python.)
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from ..arrays import require
from ..storage import committed_columns, held_flocks
from ..view import load
from .listing import Once, listed, run_summaries

TABLES = ("runs", "params", "params_wide", "metrics", "logs")
_METRICS_FIXED = ("prefix", "stream", "index", "_ts")
_LOG_PAGE = 10_000


def sql(query: str, pattern: str | None = None, dash_root: str | None = None) -> Any:
    """Run the SQL ``query`` (DuckDB's dialect) over the runs matching ``pattern``.

    Returns a ``duckdb.DuckDBPyRelation``: print it, or take ``.df()``
    (pandas), ``.arrow()`` (a pyarrow table), ``.pl()`` (polars) or
    ``.fetchall()`` (tuples).  A statement without a result (``create
    table ...``) returns None.  The tables are ``runs``, ``params``,
    ``params_wide``, ``metrics`` and ``logs`` (docs/many-runs.md lists their
    columns).  Runs are read as committed when the query is made: a live run
    shows its flushed snapshots.  ``pattern`` is a glob over prefixes as in
    :func:`list_experiments`.  A query DuckDB refuses raises ``ValueError``
    with DuckDB's message; without the extra, ``ImportError`` names the
    command that installs it.
    """
    duckdb = require("duckdb", "sql", "ml_dash.sql()")
    pa = require("pyarrow", "sql", "ml_dash.sql()")
    if not isinstance(query, str):
        raise TypeError(f"ml_dash.sql: query must be a str, got {type(query).__name__}")
    if not query.strip(" \t\n\r;"):
        raise ValueError("ml_dash.sql: the query is empty")
    connection = duckdb.connect()
    connection.execute("set enable_progress_bar = false")  # a library call prints nothing
    try:
        named, columns = _names_in(connection, query)
    except duckdb.Error as exc:
        raise ValueError(f"ml_dash.sql: {exc}") from None
    # The tables of params and points are built from the runs' summaries as they
    # are: the listing's dicts (ISO times, sorted streams) cost a third more per run.
    summaries = run_summaries(dash_root, pattern)
    readable = [(prefix, directory, s) for prefix, directory, s in summaries
                if not isinstance(s, Exception)]
    builders = {"runs": lambda: _runs_table(pa, summaries),
                "params": lambda: _params_table(pa, readable),
                "params_wide": lambda: _params_wide(pa, readable),
                "metrics": lambda: _metrics_table(pa, readable, columns),
                "logs": lambda: _logs_table(pa, readable, dash_root)}
    for name in TABLES:
        if name in named:
            connection.register(name, builders[name]())
    try:
        return connection.sql(query)
    except duckdb.Error as exc:
        raise ValueError(f"ml_dash.sql: {exc}") from None


def _names_in(connection, query):
    """``(tables, columns)``: the lowercased names of the tables and of the columns the
    query mentions, from DuckDB's own parse tree (``json_serialize_sql``).  ``columns``
    is None for all of them (a ``*`` or ``COLUMNS(...)``).  What DuckDB does not
    serialise (a statement other than one ``select``: ``create table ... as select``,
    several statements) names the tables whose names it holds as words, with all their
    columns: more is built than needed, never less.  A query the parser refuses then
    names nothing that it does not hold, and running it, DuckDB reports why.

    (Rejected: ``duckdb.get_table_names``, which in DuckDB 2.0 also binds the query and
    refuses ``join ... using (prefix)`` over tables not registered yet.)
    """
    tree = json.loads(connection.execute("select json_serialize_sql(?)", [query]).fetchall()[0][0])
    if tree.get("error"):
        words = set(re.findall(r"\w+", query.lower()))
        return {name for name in TABLES if name in words}, None
    tables: set = set()
    columns: set | None = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            kind = node.get("class")
            if kind in ("STAR", "COLUMNS"):
                columns = None
            elif kind == "COLUMN_REF" and columns is not None:
                columns.update(str(part).lower() for part in node.get("column_names", ()))
            if node.get("type") == "BASE_TABLE":
                tables.add(str(node.get("table_name", "")).lower())
            if columns is not None:
                for key in ("using_columns", "column_name_alias"):
                    columns.update(str(part).lower() for part in node.get(key) or ())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return tables, columns


def _times(pa, texts):
    return pa.array(texts, pa.string()).cast(pa.timestamp("us", "UTC"))


def _runs_table(pa, summaries):
    held = Once(held_flocks)
    runs = [listed(prefix, directory, summary, held) for prefix, directory, summary in summaries]
    segments = [run["prefix"].split("/") for run in runs]
    return pa.table({
        "prefix": pa.array([run["prefix"] for run in runs], pa.string()),
        "owner": pa.array([s[0] for s in segments], pa.string()),
        "project": pa.array([s[1] for s in segments], pa.string()),
        "name": pa.array([s[-1] for s in segments], pa.string()),
        "path": pa.array([run["path"] for run in runs], pa.string()),
        "status": pa.array([run["status"] for run in runs], pa.string()),
        "stale": pa.array([run["stale"] for run in runs], pa.bool_()),
        "created_at": _times(pa, [run.get("createdAt") for run in runs]),
        "started_at": _times(pa, [run.get("startedAt") for run in runs]),
        "ended_at": _times(pa, [run.get("endedAt") for run in runs]),
        "description": pa.array([run.get("description") for run in runs], pa.string()),
        "tags": pa.array([[str(t) for t in run.get("tags") or ()] for run in runs],
                         pa.list_(pa.string())),
        "launches": pa.array([run["launches"] for run in runs], pa.int64()),
        "streams": pa.array([len(run["streams"]) for run in runs], pa.int64()),
        "points": pa.array([run["points"] for run in runs], pa.int64()),
        "error": pa.array([run.get("error") for run in runs], pa.string()),
    })


def _kind(value):
    return "null" if value is None else {bool: "bool", int: "int", float: "float", str: "str",
                                         list: "list", dict: "dict"}.get(type(value), "str")


def _text(value):
    """A param as text: a string as it is, anything else as JSON (None stays NULL)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _number(value):
    return float(value) if type(value) in (int, float, bool) else None


def _params_table(pa, runs):
    rows = [(prefix, key, value) for prefix, _, summary in runs
            for key, value in sorted(summary["params"].items())]
    return pa.table({
        "prefix": pa.array([r[0] for r in rows], pa.string()),
        "key": pa.array([r[1] for r in rows], pa.string()),
        "value": pa.array([_text(r[2]) for r in rows], pa.string()),
        "number": pa.array([_number(r[2]) for r in rows], pa.float64()),
        "type": pa.array([_kind(r[2]) for r in rows], pa.string()),
    })


def _params_wide(pa, runs):
    params = [summary["params"] for _, _, summary in runs]
    keys = sorted(set().union(*params))
    names = column_names(("prefix",), keys)
    out = {"prefix": pa.array([prefix for prefix, _, _ in runs], pa.string())}
    for key, name in zip(keys, names):
        out[name] = _param_column(pa, [flat.get(key) for flat in params])
    return pa.table(out)


def _param_column(pa, values):
    """One typed column: BIGINT, DOUBLE, BOOLEAN or VARCHAR, as the values allow."""
    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        return pa.array(values, pa.bool_())
    if kinds and kinds <= {int} and all(v is None or -(1 << 63) <= v < 1 << 63 for v in values):
        return pa.array(values, pa.int64())
    if kinds and kinds <= {int, float}:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([_text(v) for v in values], pa.string())


def column_names(fixed, keys):
    """SQL names of ``keys`` beside the ``fixed`` columns: SQL names are compared without
    case, so a key taken already (``Loss`` beside ``loss``, or ``prefix``) gets ``_2``, ..."""
    taken = {name.lower() for name in fixed}
    out = []
    for key in keys:
        name, n = key, 1
        while name.lower() in taken:
            n += 1
            name = f"{key}_{n}"
        taken.add(name.lower())
        out.append(name)
    return out


def _float_array(pa, values):
    """An Arrow float64 array over ``values`` (no copy), NaN as NULL (a bitmap is built)."""
    missing = np.isnan(values)
    if not missing.any():
        return pa.Array.from_buffers(pa.float64(), len(values), [None, pa.py_buffer(values)])
    bitmap = np.packbits(~missing, bitorder="little")
    return pa.Array.from_buffers(pa.float64(), len(values),
                                 [pa.py_buffer(bitmap), pa.py_buffer(values)])


class _Shared:
    """Arrays that every batch slices instead of allocating its own: the zero codes of
    a one-value dictionary, the point indices, and NULLs for a column not taken."""

    def __init__(self, pa, length):
        self.pa = pa
        self.codes = pa.array(np.zeros(length, dtype=np.int8))
        self.index = pa.array(np.arange(length, dtype=np.int64))
        self.nulls = pa.nulls(length, pa.float64())
        self.no_index = pa.nulls(length, pa.int64())

    def constant(self, value, length):
        """``value`` repeated ``length`` times: a dictionary of one value.

        (Rejected: a run-end encoded array, one run per batch: DuckDB grouped
        by it about three times slower than by a dictionary.)
        """
        pa = self.pa
        return pa.DictionaryArray.from_arrays(self.codes.slice(0, length), pa.array([value], pa.string()))


def _metrics_table(pa, runs, wanted):
    taken = []  # (prefix, stream, {key: array})
    keys: dict = {}
    for prefix, directory, summary in runs:
        if not any(count for _, count in summary["streams"]):
            continue
        try:
            streams = committed_columns(directory, lambda key: _is_named(key, wanted))
        except FileNotFoundError:
            continue  # removed since it was listed
        for name, columns in streams:
            taken.append((prefix, name or "", columns))
            for key in columns:
                if key != "_ts":
                    keys.setdefault(key, None)
    names = column_names(_METRICS_FIXED, list(keys))
    label = pa.dictionary(pa.int8(), pa.string())
    fields = [pa.field("prefix", label), pa.field("stream", label),
              pa.field("index", pa.int64()), pa.field("_ts", pa.float64()),
              *(pa.field(name, pa.float64()) for name in names)]
    schema = pa.schema(fields)
    shared = _Shared(pa, max((len(columns["_ts"]) for _, _, columns in taken), default=0))
    with_index = wanted is None or "index" in wanted
    with_ts = wanted is None or "_ts" in wanted
    batches = []
    for prefix, stream, columns in taken:
        length = len(columns["_ts"])
        nulls = shared.nulls.slice(0, length)
        arrays = [shared.constant(prefix, length), shared.constant(stream, length),
                  (shared.index if with_index else shared.no_index).slice(0, length),
                  _float_array(pa, columns["_ts"]) if with_ts else nulls]
        arrays += [_float_array(pa, columns[key]) if key in columns else nulls for key in keys]
        batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return pa.Table.from_batches(batches, schema=schema)


def _is_named(key, wanted):
    """Whether the query may name ``key``: as it is, or renamed ``key_2``... by :func:`column_names`."""
    if wanted is None:
        return True
    lower = key.lower()
    return lower in wanted or any(w.startswith(lower + "_") and w[len(lower) + 1:].isdigit()
                                  for w in wanted)


def _logs_table(pa, runs, dash_root):
    rows: dict = {"prefix": [], "index": [], "time": [], "level": [], "message": [], "metadata": []}
    for prefix, _, _ in runs:
        try:
            view = load(prefix, dash_root=dash_root)
        except FileNotFoundError:
            continue
        with view:
            start = 0
            while True:
                page = view.logs.read(start_index=start, limit=_LOG_PAGE)
                for line in page["data"]:
                    rows["prefix"].append(prefix)
                    rows["index"].append(line["index"])
                    rows["time"].append(line["timestamp"])
                    rows["level"].append(line["level"])
                    rows["message"].append(line["message"])
                    rows["metadata"].append(json.dumps(line["metadata"], separators=(",", ":")))
                if not page["hasMore"]:
                    break
                start = page["endIndex"] + 1
    return pa.table({"prefix": pa.array(rows["prefix"], pa.string()),
                     "index": pa.array(rows["index"], pa.int64()),
                     "time": _times(pa, rows["time"]),
                     "level": pa.array(rows["level"], pa.string()),
                     "message": pa.array(rows["message"], pa.string()),
                     "metadata": pa.array(rows["metadata"], pa.string())})
