"""Per-batch aggregation: buffer values in memory, log their statistics once.

``exp.metrics("train").buffer(loss=v)`` keeps a value in memory (nothing is
staged or stored); ``exp.metrics.buffer.log_summary("mean", "p90")`` logs one
point per stream with ``loss.mean``, ``loss.p90``... and clears the buffers.
The legacy ``stream.summary_cache`` does the same with its own store.

``buffer()`` sits in the inner loop of training, so it appends each value
to an ``array.array("d")`` per key: as cheap as a list append, and numpy
reads it as one block of doubles when it is summarized (a list of floats
costs a conversion per value then).  Keeping the call's keyword dict instead
(one append per call) was measured slower on both ends: thousands of
retained dicts wake the garbage collector during buffering, and pulling the
values back out of the dicts cost more than the statistics themselves.
"""

import array
import warnings
import weakref

import numpy as np

from .names import stream_label as _label
from .timestamps import resolve_ts
from .values import check_fields

AGGREGATIONS = ("mean", "std", "min", "max", "count", "median", "sum",
                "p50", "p90", "p95", "p99", "first", "last")
SUMMARY_CACHE_AGGS = ("mean", "min", "max", "count", "std")
_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
NAN = float("nan")


def as_float(stream, key, value):
    """``float(value)``, None as NaN, or ``ValueError`` naming the key."""
    if value is None:
        return NAN
    try:
        return float(value)
    except Exception:  # also whatever a __float__ of the caller's raises
        raise ValueError(
            f"{_label(stream)}: buffered value of {key!r} is a {type(value).__name__}, "
            "not a number; buffer() takes values that float() accepts, or None") from None


def append_slowly(stream, values, lists, failed):
    """The careful path of ``buffer()``, after its fast path stopped at key ``failed``
    (a new key, or a value ``array("d")`` refused): undo that call's earlier
    appends, then convert every value first and append, so a bad value keeps
    nothing of the call."""
    if failed is not None:
        for key in values:
            if key == failed:
                break
            lists[key].pop()
    converted = {key: as_float(stream, key, value) for key, value in values.items()}
    for key, value in converted.items():
        lists.setdefault(key, array.array("d")).append(value)


class Pending:
    """Buffered values of one stream: ``{key: array.array("d")}``."""

    __slots__ = ("lists",)

    def __init__(self):
        self.lists = {}

    def add(self, stream, values):
        append_slowly(stream, values, self.lists, None)

    def take(self, clear=True):
        """``{key: float64 array}`` of the values so far; removed unless ``clear`` is false.

        Values appended by other threads meanwhile stay for the next summary.
        """
        out = {}
        for key, values in list(self.lists.items()):
            count = len(values)
            if count:
                # A copy: the buffer export must end before the values are deleted.
                out[key] = np.frombuffer(values, np.float64, count).copy()
                if clear:
                    del values[:count]
        return out

    def __len__(self):
        return sum(map(len, self.lists.values()))

    def last(self, keys, limit):
        """The last ``limit`` buffered values of each key (all keys if none given).

        ``limit`` 0 or None gives all of them, as in the reference package.
        """
        return {key: (values[-limit:] if limit else values).tolist()
                for key, values in self.lists.items() if values and (not keys or key in keys)}


def check_limit(limit):
    """``ValueError`` unless ``limit`` is a whole number >= 0 or None, at the peek() call."""
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ValueError(f"peek: limit must be a whole number >= 0 or None (all values), "
                         f"got {limit!r} ({type(limit).__name__})")


def check_aggregations(aggs):
    aggs = tuple(aggs) or ("mean",)
    for agg in aggs:
        if type(agg) is not str or agg not in AGGREGATIONS:
            # "Unsupported aggregation": the reference package's words, which its users match.
            kind = "" if type(agg) is str else f" ({type(agg).__name__})"
            raise ValueError(f"Unsupported aggregation {agg!r}{kind}; choose from "
                             f"{', '.join(AGGREGATIONS)}; nothing was logged and the buffers "
                             "are kept")
    return aggs


def summarize(array, aggs):
    """``{agg: value}`` of the non-NaN values of ``array``; ``{}`` when there are none."""
    values = array[~np.isnan(array)]
    count = int(values.size)
    if count == 0:
        return {}
    quantiles = {}
    wanted = [agg for agg in aggs if agg in _PERCENTILES or agg == "median"]
    if wanted:
        qs = [50.0 if agg == "median" else _PERCENTILES[agg] for agg in wanted]
        quantiles = dict(zip(wanted, np.percentile(values, qs).tolist()))
    out = {}
    for agg in aggs:
        if agg in quantiles:
            out[agg] = quantiles[agg]
        elif agg == "mean":
            out[agg] = float(values.mean())
        elif agg == "std":
            out[agg] = float(values.std(ddof=1)) if count > 1 else 0.0
        elif agg == "min":
            out[agg] = float(values.min())
        elif agg == "max":
            out[agg] = float(values.max())
        elif agg == "count":
            out[agg] = count
        elif agg == "sum":
            out[agg] = float(values.sum())
        elif agg == "first":
            out[agg] = float(values[0])
        else:  # last
            out[agg] = float(values[-1])
    return out


def summary_fields(arrays, aggs):
    """``{"<key>.<agg>": value}`` for ``{key: values}``."""
    fields = {}
    for key, values in arrays.items():
        for agg, value in summarize(values, aggs).items():
            fields[f"{key}.{agg}"] = value
    return fields


def _pending_of(stream):
    return getattr(stream, "_buffered", None)


class BufferSet:
    """``exp.metrics.buffer``: buffers the root stream when called, and
    summarizes or peeks at the buffers of every stream."""

    def __init__(self, metrics):
        # Weak: a strong reference would make a cycle with the metrics, and a
        # view's store would then wait for the cycle collector to be released.
        self._ref = weakref.ref(metrics)

    @property
    def _metrics(self):
        return self._ref()

    def __call__(self, **values):
        return self._metrics._buffer(**values)

    def _streams(self):
        metrics = self._metrics
        return [metrics, *metrics._streams.values()]

    def log_summary(self, *aggs, **extra):
        """Log one point per stream with buffered values, then clear the buffers.

        Each point holds ``extra`` plus ``"<key>.<agg>"`` for each buffered key
        and aggregation (default ``"mean"``).  NaN (and None) values are
        ignored; a key with no other values gets no statistics.  All points
        share one ``_ts``.  Returns ``exp.metrics`` (chain ``.flush()``).
        """
        aggs = check_aggregations(aggs)
        ts = extra.pop("_ts", None)
        check_fields(None, dict(extra))
        metrics = self._metrics
        if metrics._exp._session is None:
            metrics._exp._open_session()  # raises: the run is not started
        work = [(stream, pending.take()) for stream in self._streams()
                for pending in [_pending_of(stream)] if pending]
        if not work:
            return metrics
        ts = resolve_ts(ts)
        for stream, arrays in work:
            fields = dict(extra)
            fields.update(summary_fields(arrays, aggs))
            if fields:
                stream.log(_ts=ts, **fields)
        return metrics

    def peek(self, prefix=None, *keys, limit=5):
        """The last ``limit`` buffered values per key, changing nothing.

        ``prefix`` names a stream: its keys as they are.  Without it, every
        stream's keys as ``"<stream>/<key>"`` (the root's as ``"<key>"``).
        ``limit`` 0 or None: every value.
        """
        check_limit(limit)
        if prefix is not None:
            # Looked up, not made: peeking at a stream never used creates no stream.
            pending = _pending_of(self._metrics._streams.get(prefix))
            return pending.last(keys, limit) if pending else {}
        out = {}
        for stream in self._streams():
            pending = _pending_of(stream)
            if pending:
                for key, values in pending.last(keys, limit).items():
                    out[key if stream.name is None else f"{stream.name}/{key}"] = values
        return out

    def unsummarized(self):
        """``{stream name: count of buffered values}`` of streams with any."""
        out: dict = {}
        for stream in self._streams():
            for pending in (_pending_of(stream), getattr(stream, "_summary_cache", None)):
                if pending:
                    out[stream.name] = out.get(stream.name, 0) + len(pending)
        return out

    def warn_unsummarized(self, prefix):
        left = self.unsummarized()
        if left:
            streams = ", ".join(f"{_label(name)} ({count})"
                                for name, count in left.items())
            warnings.warn(
                f"experiment {prefix!r} closed with buffered values never summarized in "
                f"{streams}; call exp.metrics.buffer.log_summary() before the run ends",
                stacklevel=4)


class SummaryCache:
    """Legacy aggregation: ``store()`` values, ``set()`` fields, ``summarize()``."""

    def __init__(self, stream):
        self._stream = stream
        self._pending = Pending()
        self._fixed = {}
        self._summarized = 0  # stored values a summarize(clear=False) already covered

    def store(self, **values):
        """Accumulate values, as ``buffer()`` does."""
        self._stream._exp._open_session()
        self._pending.add(self._stream.name, values)
        return self

    def set(self, **fields):
        """Fields logged as they are with the next summary (later calls win)."""
        self._fixed.update(check_fields(self._stream.name, dict(fields)))
        return self

    def summarize(self, clear=True):
        """Log the set fields plus ``key.mean/min/max/count/std`` of the stored values.

        ``clear=False`` keeps the values (and fields) accumulating.
        """
        self._stream._exp._open_session()
        fields = dict(self._fixed)
        arrays = self._pending.take(clear)
        fields.update(summary_fields(arrays, SUMMARY_CACHE_AGGS))
        # Kept values were summarized: closing the run must not warn that they never were.
        self._summarized = 0 if clear else sum(map(len, arrays.values()))
        if clear:
            self._fixed = {}
        if fields:
            self._stream.log(**fields)
        return self._stream

    def peek(self, *keys, limit=5):
        """The last ``limit`` stored values per key (0 or None: all of them)."""
        check_limit(limit)
        return self._pending.last(keys, limit)

    def __len__(self):
        """Stored values that no summary has covered yet."""
        return len(self._pending) - self._summarized

