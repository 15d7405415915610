"""Per-batch aggregation: buffer values in memory, log their statistics once.

``exp.metrics("train").buffer(loss=v)`` keeps a value in memory (nothing is
staged or stored); ``exp.metrics.buffer.log_summary("mean", "p90")`` logs one
point per stream with ``loss.mean``, ``loss.p90``... and clears the buffers.
The legacy ``stream.summary_cache`` does the same with its own store.

``buffer()`` sits in the inner loop of training, so it only appends the
call's keyword dict to the stream's list when every value is a plain number
(one C-level type check); the values are turned into numpy arrays when they
are summarized.  Keeping one list per key instead was measured slower: it
costs a dict lookup and an append per key on every call.
"""

import operator
import warnings

import numpy as np

from .values import check_fields, resolve_ts

AGGREGATIONS = ("mean", "std", "min", "max", "count", "median", "sum",
                "p50", "p90", "p95", "p99", "first", "last")
SUMMARY_CACHE_AGGS = ("mean", "min", "max", "count", "std")
_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
_NUMBERS = frozenset((float, int, bool))
NAN = float("nan")


def _label(stream):
    return "the root stream" if stream is None else f"stream {stream!r}"


def checked_values(stream, values):
    """``values`` with each value as ``float()`` makes it (None is NaN), or ``ValueError``."""
    out = {}
    for key, value in values.items():
        if value is None:
            out[key] = NAN
            continue
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{_label(stream)}: buffered value of {key!r} is a {type(value).__name__}, "
                "not a number; buffer() takes values that float() accepts, or None") from None
    return out


class Pending:
    """Buffered calls of one stream: a list of keyword dicts."""

    __slots__ = ("calls",)

    def __init__(self):
        self.calls = []

    def add(self, stream, values):
        if not _NUMBERS.issuperset(map(type, values.values())):
            values = checked_values(stream, values)
        self.calls.append(values)

    def take(self, clear=True):
        """The buffered calls so far; removed unless ``clear`` is false.

        Calls appended by other threads meanwhile stay for the next summary.
        """
        calls = self.calls
        count = len(calls)
        taken = calls[:count]
        if clear:
            del calls[:count]
        return taken

    def __len__(self):
        return len(self.calls)

    def arrays(self, calls):
        """``{key: float64 array}`` of ``calls``, NaN where a call lacks the key."""
        keys = {}
        for call in calls:
            keys.update(dict.fromkeys(call))
        keys = list(keys)
        if not keys:
            return {}
        try:
            pick = operator.itemgetter(*keys)
            rows = np.array(list(map(pick, calls)), dtype=np.float64)
            rows = rows.reshape(len(calls), len(keys))
            return {key: rows[:, i] for i, key in enumerate(keys)}
        except (KeyError, TypeError, ValueError):  # calls with different keys
            return {key: np.fromiter((call.get(key, NAN) for call in calls), np.float64, len(calls))
                    for key in keys}

    def last(self, keys, limit):
        """The last ``limit`` buffered values of each key, oldest first."""
        out = {}
        for call in reversed(self.calls):
            for key, value in call.items():
                if keys and key not in keys:
                    continue
                values = out.setdefault(key, [])
                if len(values) < limit:
                    values.append(float(value))
        return {key: values[::-1] for key, values in out.items()}


def check_aggregations(aggs):
    aggs = tuple(aggs) or ("mean",)
    for agg in aggs:
        if agg not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {agg!r}; choose from {', '.join(AGGREGATIONS)}")
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


def summary_fields(pending, calls, aggs):
    """``{"<key>.<agg>": value}`` for the buffered ``calls``."""
    fields = {}
    for key, array in pending.arrays(calls).items():
        for agg, value in summarize(array, aggs).items():
            fields[f"{key}.{agg}"] = value
    return fields


class Buffered:
    """Mixin of streams: ``buffer()`` and ``summary_cache``."""

    def buffer(self, **values):
        """Keep ``values`` in memory for the next ``log_summary()``; returns the stream."""
        if self._exp._session is None:
            self._exp._open_session()  # raises: the run is not started
        try:
            self._pending.add(self.name, values)
        except AttributeError:
            self._pending = Pending()
            self._pending.add(self.name, values)
        return self

    @property
    def summary_cache(self):
        """The legacy per-stream cache: ``store``, ``set``, ``summarize``, ``peek``."""
        try:
            return self._summary_cache
        except AttributeError:
            self._summary_cache = SummaryCache(self)
            return self._summary_cache


def _pending_of(stream):
    return getattr(stream, "_pending", None)


class BufferSet:
    """``exp.metrics.buffer``: buffers the root stream when called, and
    summarizes or peeks at the buffers of every stream."""

    def __init__(self, metrics):
        self._metrics = metrics

    def __call__(self, **values):
        return Buffered.buffer(self._metrics, **values)

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
        work = [(stream, pending, pending.take()) for stream in self._streams()
                for pending in [_pending_of(stream)] if pending]
        if not work:
            return metrics
        ts = resolve_ts(ts)
        for stream, pending, calls in work:
            fields = dict(extra)
            fields.update(summary_fields(pending, calls, aggs))
            if fields:
                stream.log(_ts=ts, **fields)
        return metrics

    def peek(self, prefix=None, *keys, limit=5):
        """The last ``limit`` buffered values per key, changing nothing.

        ``prefix`` names a stream: its keys as they are.  Without it, every
        stream's keys as ``"<stream>/<key>"`` (the root's as ``"<key>"``).
        """
        if prefix is not None:
            pending = _pending_of(self._metrics(prefix))
            return pending.last(keys, limit) if pending else {}
        out = {}
        for stream in self._streams():
            pending = _pending_of(stream)
            if pending:
                for key, values in pending.last(keys, limit).items():
                    out[key if stream.name is None else f"{stream.name}/{key}"] = values
        return out

    def unsummarized(self):
        """``{stream name: buffered call count}`` of streams with buffered values."""
        out = {}
        for stream in self._streams():
            for pending in (_pending_of(stream), getattr(stream, "_summary_cache", None)):
                if pending:
                    out[stream.name] = out.get(stream.name, 0) + len(pending)
        return out

    def warn_unsummarized(self, prefix):
        left = self.unsummarized()
        if left:
            streams = ", ".join(f"{'root' if name is None else repr(name)} ({count})"
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
        calls = self._pending.take(clear)
        fields = dict(self._fixed)
        fields.update(summary_fields(self._pending, calls, SUMMARY_CACHE_AGGS))
        if clear:
            self._fixed = {}
        if fields:
            self._stream.log(**fields)
        return self._stream

    def peek(self, *keys, limit=5):
        """The last ``limit`` stored values per key."""
        return self._pending.last(keys, limit)

    def __len__(self):
        return len(self._pending)

