"""Joins: streams side by side on a key (``align``).

Ranges of one stream (``stream.index_range``, ``between``) are in
:mod:`ml_dash.arrays`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SNAPSHOT = "snapshot"


def align(*streams: Any, on: str = "step", keys: list | None = None) -> dict:
    """Join streams on a key: one row per value of ``on`` found in every stream.

    Each stream contributes its last point with that value (``train``
    logged every batch of an epoch gives its end-of-epoch point; ``eval``
    its one point).  ``on="snapshot"`` joins on the snapshot the points were
    committed in (their commit time).  ``keys`` restricts the columns taken
    from each stream.  Returns ``{on: values, "<stream>.<key>": column,
    "<stream>.index": point indices}`` with the root stream named ``root``.
    """
    if len(streams) < 2:
        raise ValueError("align() needs at least two streams")
    lasts = []
    for stream in streams:
        joined = stream.commit_times() if on == SNAPSHOT else stream.column(on)
        values, first_from_end = np.unique(joined[::-1], return_index=True)
        last = len(joined) - 1 - first_from_end
        finite = ~np.isnan(values)
        lasts.append((values[finite], last[finite]))
    common = lasts[0][0]
    for values, _ in lasts[1:]:
        common = np.intersect1d(common, values, assume_unique=True)
    out = {on: common}
    for stream, (values, last) in zip(streams, lasts):
        label = stream.name if stream.name is not None else "root"
        rows = last[np.searchsorted(values, common)]
        out[f"{label}.index"] = rows
        available = stream.keys()
        wanted = [k for k in (keys or available) if k in available and k != on]
        for key, column in stream.columns(*wanted).items():
            out[f"{label}.{key}"] = column[rows]
    return out
