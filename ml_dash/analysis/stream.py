"""Analysis methods of a stream, shared by live streams and ``load()`` views.

Mixed into :class:`ml_dash.reading.StreamReading`, which provides
``column``, ``columns``, ``keys``, ``name``, ``store_name`` and ``_store()``.
"""

import numpy as np

from . import downsample as _downsample
from . import ranges, tables


class StreamAnalysis:
    def downsample(self, key, n=2000, method="minmax", x=None, start=0, stop=None):
        """``(x, y)`` arrays of at most ``n`` points of ``key`` to draw it.

        ``method``: ``"minmax"`` (each bucket's smallest and largest point:
        every peak kept) or ``"lttb"`` (the curve's shape; also keeps the
        smallest and largest point).  ``x``: a column for the x axis, such
        as ``"step"`` or ``"_ts"``; default the point index.  Works on the
        memory map in chunks: the column is never read into memory whole.
        """
        values = self.column(key, start=start, stop=stop)
        xs = None if x is None else self.column(x, start=start, stop=stop)
        picked, ys = _downsample.downsample(values, n, method, x=xs)
        return (picked + start if xs is None else _downsample.take(xs, picked)), ys

    def index_range(self, low=None, high=None, key="_ts"):
        """``(start, stop)`` of the points whose ``key`` lies in ``[low, high)``.

        Binary search on the column: ``key`` must be non-decreasing (``_ts``,
        a step or epoch counter).  None leaves an end open.
        """
        return ranges.index_range(self.column(key), low, high)

    def between(self, low=None, high=None, key="_ts", keys=()):
        """Columns of the points whose ``key`` lies in ``[low, high)``.

        ``{"index": point indices, key: ..., other columns...}``; ``keys``
        picks the columns (default all).  Views of the memory map, no copy.
        """
        start, stop = self.index_range(low, high, key)
        wanted = [key, *(k for k in keys if k != key)] if keys else []
        found = self.columns(*wanted, start=start, stop=stop)
        return {"index": np.arange(start, start + len(found[key]), dtype=np.int64), **found}

    def commit_times(self, start=0, stop=None):
        """Commit time (POSIX seconds) of the snapshot of each point ``[start, stop)``.

        Read from the rows (one scan; the fields are not decoded): points
        with equal commit times were flushed together.
        """
        return self._store().commit_times(self.store_name, start, stop)

    def to_pandas(self, *keys, start=0, stop=None):
        """A ``pandas.DataFrame`` of the stream's columns (all, or ``keys``),
        indexed by point index.  Needs the ``pandas`` extra.

        Only numeric fields are columns; ``read()`` gives every field.
        """
        return tables.frame(self._table(keys, start, stop), index="index")

    def to_arrow(self, *keys, start=0, stop=None):
        """A ``pyarrow.Table`` of the stream's columns plus ``index``.
        Needs the ``arrow`` extra."""
        return tables.arrow_table(self._table(keys, start, stop))

    def _table(self, keys, start, stop):
        found = self.columns(*keys, start=start, stop=stop)
        length = len(next(iter(found.values()))) if found else 0
        return {"index": np.arange(start, start + length, dtype=np.int64), **found}
