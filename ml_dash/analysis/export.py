"""Exporting a run to CSV, JSON lines or Parquet.

CSV and Parquet are tables of numbers: one row per point, columns
``stream, index, createdAt, _ts`` and every numeric column of the run (NaN
where a stream lacks it), read from the memory maps in chunks.  JSON lines
is the lossless dump: one object per point with every field as logged
(strings, lists and nested dicts included), read from the rows.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable

import numpy as np

from ..errors import StreamNotFoundError
from ..names import ROOT_EXPORT, absent_streams
from ..timestamps import iso
from ..view import load
from .tables import require

FORMATS = ("csv", "jsonl", "parquet")
CHUNK = 50_000  # points per step


def export(prefix: str, path: str, format: str | None = None, *, dash_root: str | None = None,
           streams: list | None = None, progress: Callable | None = None) -> int:
    """Write the run ``prefix`` to ``path``; returns the number of points written.

    ``format``: ``"csv"``, ``"jsonl"`` or ``"parquet"`` (Parquet needs the
    ``arrow`` extra); default from the file's suffix.  ``streams`` limits
    the export to those streams (None for the root); one the run lacks
    raises ``StreamNotFoundError`` with the close matches.  ``progress(done,
    total)`` is called after every chunk.  The file is written beside
    ``path`` and renamed into place, so a failed export leaves no half file.
    """
    format = format or os.path.splitext(path)[1].lstrip(".").lower()
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; use one of {list(FORMATS)}")
    with load(prefix, dash_root=dash_root) as view:
        names = view.metrics.names()
        if streams is not None:
            wanted = {s or None for s in streams}
            missing = wanted - set(names) - {None}  # the root always exists, maybe empty
            if missing:  # a typo exported nothing, silently
                raise StreamNotFoundError(absent_streams(sorted(missing, key=str), names, prefix))
            names = [n for n in names if n in wanted]
        selected = [view.metrics(name) for name in sorted(names, key=lambda n: (n is not None, n or ""))]
        total = sum(len(s) for s in selected)
        temporary = f"{path}.partial"
        try:
            done = _WRITERS[format](selected, temporary, _Progress(progress, total))
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise
    return done


class _Progress:
    def __init__(self, callback, total):
        self.callback, self.total, self.done = callback, total, 0

    def add(self, count):
        self.done += count
        if self.callback is not None:
            self.callback(self.done, self.total)


def _keys(streams):
    keys: list = []
    for stream in streams:
        keys.extend(k for k in stream.keys() if k != "_ts" and k not in keys)
    return keys


def _chunks(stream, keys):
    """``(start, {column: array})`` per chunk, with ``createdAt`` seconds."""
    count = len(stream)
    own = set(stream.keys())
    for start in range(0, count, CHUNK):
        stop = min(start + CHUNK, count)
        columns = stream.columns("_ts", *(k for k in keys if k in own), start=start, stop=stop)
        length = stop - start
        yield start, {
            "createdAt": stream.commit_times(start, stop),
            "_ts": columns["_ts"],
            **{k: columns[k] if k in columns else np.full(length, np.nan) for k in keys},
        }


def _label(stream):
    """The stream column of every export format: the name, ``""`` for the root."""
    return stream.name or ROOT_EXPORT


def _csv(streams, path, progress):
    keys = _keys(streams)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["stream", "index", "createdAt", "_ts", *keys])
        for stream in streams:
            label = _label(stream)
            for start, columns in _chunks(stream, keys):
                created = [iso(t) for t in columns.pop("createdAt").tolist()]
                values = [[_csv_number(v) for v in column.tolist()] for column in columns.values()]
                out.writerows(zip([label] * len(created), range(start, start + len(created)),
                                  created, *values))
                progress.add(len(created))
    return progress.done


def _csv_number(value):
    if value != value:
        return ""  # NaN: the point lacks the key
    return int(value) if value.is_integer() and abs(value) < 2 ** 53 else repr(value)


def _jsonl(streams, path, progress):
    with open(path, "w") as f:
        for stream in streams:
            label = _label(stream)
            start = 0
            while True:
                page = stream.read(start_index=start, limit=CHUNK)
                for row in page["data"]:
                    f.write(json.dumps({"stream": label, "index": row["index"],
                                        "createdAt": row["createdAt"], "data": row["data"]}))
                    f.write("\n")
                progress.add(len(page["data"]))
                if not page["hasMore"]:
                    break
                start += len(page["data"])
    return progress.done


def _parquet(streams, path, progress):
    pa = require("pyarrow", "arrow")
    pq = require("pyarrow.parquet", "arrow")
    keys = _keys(streams)
    schema = pa.schema([("stream", pa.string()), ("index", pa.int64()),
                        ("createdAt", pa.timestamp("us", tz="UTC")), ("_ts", pa.float64()),
                        *((k, pa.float64()) for k in keys)])
    with pq.ParquetWriter(path, schema) as writer:
        for stream in streams:
            label = _label(stream)
            for start, columns in _chunks(stream, keys):
                length = len(columns["_ts"])
                created = (columns.pop("createdAt") * 1e6).round().astype("int64")
                arrays = [pa.array([label] * length, pa.string()),
                          pa.array(np.arange(start, start + length)),
                          pa.array(created, pa.timestamp("us", tz="UTC")),
                          *(pa.array(np.asarray(v)) for v in columns.values())]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                progress.add(length)
    return progress.done


_WRITERS = {"csv": _csv, "jsonl": _jsonl, "parquet": _parquet}
