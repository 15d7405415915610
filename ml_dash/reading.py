"""Read methods shared by live streams and the read-only views of ``load()``."""

import datetime
import difflib
import math

from .analysis.stream import StreamAnalysis
from .errors import ColumnNotFoundError, StreamNotFoundError

_UTC = datetime.timezone.utc


def iso(timestamp):
    """ISO-8601 UTC text of a POSIX timestamp (None stays None), e.g.
    ``2026-11-28T04:33:14.845556Z``.

    Points of one page mostly fall in the same second, so the formatted
    second is kept and only the microseconds are formatted anew: a third of
    the cost of ``datetime.isoformat`` per row of ``read()``.
    """
    if timestamp is None:
        return None
    second = math.floor(timestamp)
    micro = round((timestamp - second) * 1e6)
    if micro == 1_000_000:
        second, micro = second + 1, 0
    global _last_second
    cached = _last_second  # one tuple, read once: safe across threads
    if cached[0] != second:
        cached = _last_second = (
            second, datetime.datetime.fromtimestamp(second, _UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{micro:06d}Z"


_last_second = (None, "")


def _check_range(start_index, limit):
    if start_index < 0 or limit < 0:
        raise ValueError(f"start_index and limit must be >= 0, got {start_index} and {limit}")


class StreamReading(StreamAnalysis):
    """Reading one stream (the analysis methods come from ``StreamAnalysis``).
    Subclasses provide ``name`` (None for the root),
    ``store_name`` and ``_store()`` (a ``StoreReader``)."""

    def _label(self):
        return "the root stream" if self.name is None else f"stream {self.name!r}"

    def read(self, start_index=0, limit=1000):
        """A page of committed points ``[start_index, start_index + limit)``.

        Returns ``{"data", "startIndex", "endIndex", "total", "hasMore"}``;
        ``total`` is the number of rows in this page.
        """
        _check_range(start_index, limit)
        rows, has_more = self._store().page(self.store_name, start_index, limit)
        data = []
        for index, created, ts, fields in rows:
            fields["_ts"] = ts
            data.append({"index": index, "data": fields, "createdAt": iso(created)})
        return {
            "data": data,
            "startIndex": start_index,
            "endIndex": start_index + len(data) - 1,
            "total": len(data),
            "hasMore": has_more,
        }

    def __len__(self):
        """Number of committed points."""
        return self._store().count(self.store_name)

    def keys(self):
        """Names of the stream's columns (its numeric fields, and ``_ts``)."""
        return self._store().column_keys(self.store_name)

    def column(self, key, start=0, stop=None, *, downsample=None, method="minmax"):
        """Committed values of ``key`` for points ``[start, stop)``.

        A read-only float64 view of the column's memory map (NaN where a point
        lacks the key); copy it to keep it past the run's lifetime cheaply.
        ``downsample=n``: at most ``n`` values picked by ``method`` (see
        :meth:`downsample`, which also gives their x positions).
        """
        if downsample is not None:
            return self.downsample(key, downsample, method, start=start, stop=stop)[1]
        _check_range(start, 0 if stop is None else stop)
        values = self._store().column(self.store_name, key, start, stop)
        if values is None:
            raise ColumnNotFoundError(self._missing_message(key))
        return values

    def columns(self, *keys, start=0, stop=None):
        """``{key: column}`` for ``keys``, or for every column when none are given."""
        _check_range(start, 0 if stop is None else stop)
        found, missing = self._store().columns(self.store_name, list(keys) or None, start, stop)
        if missing:
            raise ColumnNotFoundError(self._missing_message(missing[0]))
        return found

    def _missing_message(self, key):
        """Why ``key`` is not found, with the close matches among columns or streams."""
        available = self.keys()
        if available:
            close = difflib.get_close_matches(key, available, n=3)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            return f"{self._label()} has no column {key!r}{hint}; its columns are {available}"
        streams = sorted(name for name in self._store().stream_names() if name)
        close = difflib.get_close_matches(self.name or "", streams, n=3)
        hint = f"; did you mean stream {' or '.join(map(repr, close))}?" if close else (
            f"; the streams with points are {streams}" if streams else "")
        return f"{self._label()} has no committed points, so no column {key!r}{hint}"

    def stats(self):
        """A summary of the stream: counts, times, columns and its description."""
        ends = self._store().ends(self.store_name)
        if ends is None:
            raise StreamNotFoundError(f"{self._label()} has no committed points")
        return summarize(self.name, *ends)


def summarize(name, entry, count, first, last):
    """The ``stats()`` dict of a stream from its catalog entry and end points."""
    record = entry.record
    return {
        "name": name,
        "description": record.get("description"),
        "tags": record.get("tags") or [],
        "metadata": record.get("metadata"),
        "totalDataPoints": str(count),
        "count": count,
        "createdAt": iso(record.get("createdAt")),
        "updatedAt": iso(last[0]),
        "firstDataAt": iso(first[1]),
        "lastDataAt": iso(last[1]),
        "columns": [key for key in entry.columns if key != "_ts"],
    }


class ExperimentReading:
    """Stream listing shared by live experiments and views."""

    def _list_streams(self, store):
        out = []
        for name in store.stream_names():
            ends = store.ends(name)
            if ends is not None:
                out.append(summarize(name or None, *ends))
        out.sort(key=lambda s: (s["name"] is not None, s["name"] or ""))
        return out
