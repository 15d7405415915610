"""One stream of points, ``exp.metrics("train")``: logging, reading and analysis.

The same class serves a live experiment and a read-only view of
``load()``: it reads committed points through its owner's store reader and
logs through its owner's session, which a view has not (a write method of a
view raises ``ExperimentError`` saying it was opened read-only).  ``log()``
only validates and stages a point in memory; ``flush()`` commits everything
staged, across all streams, as one snapshot (see ``storage/writer.py``).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from . import downsample as _downsample
from .aggregation import Pending, SummaryCache, append_slowly
from .arrays import arrow_table, frame, index_range
from .errors import ColumnNotFoundError, StreamNotFoundError
from .names import did_you_mean, stream_label
from .storage import StreamSpec
from .timestamps import _last_ts, iso, now, resolve_ts
from .values import check_fields

# Values that need no conversion: checked in one C-level pass by log().
_PLAIN_TYPES = frozenset((float, int, str, bool, type(None)))


def check_range(start_index: Any, limit: Any, names: tuple[str, str] = ("start_index", "limit")) -> None:
    """``TypeError``/``ValueError`` naming the argument unless both are whole numbers >= 0.

    Python and numpy integers pass (``operator.index``); a float, a string,
    None or a bool would otherwise fail deep in a read with a message that
    names nothing the caller wrote.
    """
    if type(start_index) is int and type(limit) is int and start_index >= 0 and limit >= 0:
        return  # the common case first: every point read passes here
    for name, value in zip(names, (start_index, limit)):
        try:
            if isinstance(value, bool):
                raise TypeError
            number = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be a whole number, got {type(value).__name__} "
                            f"{value!r}") from None
        if number < 0:
            raise ValueError(f"{name} must be >= 0, got {number}")


class Stream:
    """One named series of points (``name`` None for the root stream).

    ``owner`` is the :class:`~ml_dash.Experiment` or the
    :class:`~ml_dash.ExperimentView` it belongs to.
    """

    # Made on first use (buffer(), summary_cache): most streams never need them.
    _buffered: Pending
    _summary_cache: SummaryCache

    def __init__(self, owner: Any, name: str | None, info: dict | None = None) -> None:
        self._exp = owner
        self.name = name
        self.store_name = name or ""  # the name inside the store: "" for the root
        self.info = info if info is not None else {}
        self._spec = StreamSpec(self.store_name, self.info)  # what staged points carry

    @property
    def _name(self) -> str | None:
        """``name`` under the reference package's attribute name, which its users read."""
        return self.name

    def _reader(self):
        """The owner's committed-data reader (a live run's, or a view's)."""
        return self._exp._reader()

    def _label(self) -> str:
        return stream_label(self.name)

    # -- writing ------------------------------------------------------------------

    def log(self, _ts: float | dict | None = None, _flush: bool = False, **fields: Any) -> Stream:
        """Stage one point; returns the stream so calls can be chained.

        ``_ts``: the point's time (default now; ``-1`` reuses the last one
        used in this thread).  ``_flush=True`` also commits at once.  A dict
        in its place is the point's fields, as other trackers take them:
        ``log({"loss": 0.3})`` is ``log(loss=0.3)`` (see :meth:`_log_dict`).
        """
        # The hot path of a training loop: kept inline and flat on purpose
        # (bench/core.py measures it against a plain list append).
        session = self._exp._session
        if session is None:
            self._exp._open_session()  # raises: the run is not started, or read-only
        for value in fields.values():
            if type(value) not in _PLAIN_TYPES:
                if self.name is None and dict in map(type, fields.values()):
                    return self._route(_ts, _flush, fields)
                check_fields(self.name, fields)
                break
        if "" in fields:
            check_fields(self.name, fields)
        if _ts is None:
            _ts = _last_ts.value = now()
        elif type(_ts) is dict:  # tested only when a time was given: the default path pays nothing
            return self._log_dict(_ts, _flush, fields)
        else:
            _ts = resolve_ts(_ts)
        staged = session.staged
        backlog = len(staged)
        if backlog >= session.max_backlog:
            # Before staging: a failing automatic flush then raises with this
            # point not staged, so calling log() again stores it once.  (Flushing
            # after staging raised with the point staged: a retry stored it twice.)
            session.flush()
        # session.staged again, not the queue read above: a run that closed meanwhile
        # swapped it for one that refuses the point, which the old queue would have lost
        session.staged.append((self._spec, fields, _ts))
        if _flush:
            session.flush()
        return self

    def _log_dict(self, given, _flush, fields):
        """``log({"loss": 0.3}, step=1)``: the dict's items are fields, merged with the keywords.

        A ``"_ts"`` item is the point's time.  Keys must be strings, and a
        key given both ways is refused (which value was meant is a guess);
        on the root stream dict values are routed to streams as keywords
        are.  (Rejected: a separate ``log_dict()``: scripts written for
        wandb or trackio call ``log(dict)`` and should run as they are.)
        """
        if type(_flush) is not bool:  # log({...}, {...}): the second dict would be taken as _flush
            raise TypeError(f"{self._label()}: log() takes one dict of fields; its second argument is "
                            f"_flush, which must be True or False, got {type(_flush).__name__}")
        for key in given:
            if not isinstance(key, str):
                raise TypeError(f"{self._label()}: field names must be strings, got "
                                f"{type(key).__name__} {key!r} in the dict given to log()")
            if key in fields:
                raise TypeError(f"{self._label()}: field {key!r} given both in the dict and as a "
                                "keyword of log(); give it once")
            if key == "_flush":
                raise TypeError(f"{self._label()}: '_flush' is log()'s own flag, not a field; "
                                "pass it as log({...}, _flush=True)")
        merged = {**given, **fields}
        return self.log(merged.pop("_ts", None), _flush, **merged)

    def _route(self, _ts, _flush, fields):
        raise TypeError(f"{self._label()}: dict values are routed to streams only by the root stream")

    def flush(self) -> Stream:
        """Commit everything staged in the experiment, across all streams."""
        session = self._exp._session
        if session is None:
            self._exp._open_session()  # raises: the run is not open
        session.flush()
        return self

    def _buffer(self, **values: Any) -> Stream:
        """Keep ``values`` in memory for the next ``log_summary()``; returns the stream.

        Values go through ``float()`` (None is NaN); anything else raises
        ``ValueError`` naming the key, and nothing of the call is kept.
        """
        # The inner loop of training: Pending.add inlined (bench/api.py).
        if self._exp._session is None:
            self._exp._open_session()  # raises: the run is not started
        try:
            lists = self._buffered.lists
        except AttributeError:  # first call; setdefault: two threads may race here
            lists = self.__dict__.setdefault("_buffered", Pending()).lists
        # array("d").append takes ints, bools and anything with __float__ (numpy
        # and torch scalars) itself; a new key, None or a string stops the loop.
        key = None
        try:
            for key in values:
                lists[key].append(values[key])
        except Exception:  # a new key, or a value array("d") or its __float__ refused
            append_slowly(self.name, values, lists, key)
        return self

    buffer = _buffer

    @property
    def summary_cache(self) -> SummaryCache:
        """The legacy per-stream cache: ``store``, ``set``, ``summarize``, ``peek``."""
        try:
            return self._summary_cache
        except AttributeError:
            return self.__dict__.setdefault("_summary_cache", SummaryCache(self))

    # -- reading ------------------------------------------------------------------

    def read(self, start_index: int = 0, limit: int = 1000) -> dict:
        """A page of committed points ``[start_index, start_index + limit)``.

        Returns ``{"data", "startIndex", "endIndex", "total", "hasMore"}``;
        ``total`` is the number of rows in this page.
        """
        check_range(start_index, limit)
        rows, has_more = self._reader().page(self.store_name, start_index, limit)
        if not rows:
            self._refuse_if_absent()
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

    def __len__(self) -> int:
        """Number of committed points."""
        count = self._reader().count(self.store_name)
        if not count:
            self._refuse_if_absent()
        return count

    def keys(self) -> list[str]:
        """Names of the stream's columns (its numeric fields, and ``_ts``)."""
        keys = self._reader().column_keys(self.store_name)
        if not keys:
            self._refuse_if_absent()
        return keys

    def _refuse_if_absent(self):
        """``StreamNotFoundError`` with the close matches for a named stream that a
        view reads and that does not exist in a run that has ended (a status
        other than ``RUNNING``).

        Called only when a read found nothing, so reads of streams that exist
        pay nothing for it.  A running run's streams may still appear (a watcher
        started before the training logs them; a stale run requeued), so they read as empty, as
        they do for the experiment that writes them; taking the handle,
        ``view.metrics("x")``, never raises.
        """
        if self.name is None or not self._exp._streams_are_final():
            return
        names = self._reader().stream_names()
        if self.store_name not in names:
            raise StreamNotFoundError(self._absent_message(names))

    def _absent_message(self, names):
        streams = sorted(name for name in names if name)
        hint = did_you_mean(self.name or "", streams, "stream ")
        hint = f"; {hint}" if hint else (f"; its streams are {streams}" if streams else
                                         "; it has no named streams")
        return (f"{self._label()} has no committed points: {self._exp.prefix} has no such stream "
                f"and has ended{hint}")

    def column(self, key: str, start: int = 0, stop: int | None = None, *,
               downsample: int | None = None, method: str = "minmax") -> np.ndarray:
        """Committed values of ``key`` for points ``[start, stop)``.

        A read-only float64 view of the column's memory map (NaN where a point
        lacks the key); copy it to keep it past the run's lifetime cheaply.
        ``downsample=n``: at most ``n`` values picked by ``method`` (see
        :meth:`downsample`, which also gives their x positions).
        """
        if downsample is not None:
            return self.downsample(key, downsample, method, start=start, stop=stop)[1]
        # The checks of check_range inline: a point read, column(key, k, k + 1),
        # costs about 0.5 us, and a call more would be a tenth of it.
        if not (type(start) is int and start >= 0 and (stop is None or (type(stop) is int and stop >= 0))):
            check_range(start, 0 if stop is None else stop, ("start", "stop"))
        values = self._exp._reader().column(self.store_name, key, start, stop)
        if values is None:
            raise ColumnNotFoundError(self._missing_message(key))
        return values

    def columns(self, *keys: str, start: int = 0, stop: int | None = None) -> dict:
        """``{key: column}`` for ``keys``, or for every column when none are given."""
        check_range(start, 0 if stop is None else stop, ("start", "stop"))
        found, missing = self._reader().columns(self.store_name, list(keys) or None, start, stop)
        if not found:
            self._refuse_if_absent()
        if missing:
            raise ColumnNotFoundError(self._missing_message(missing[0]))
        return found

    def _missing_message(self, key):
        """Why ``key`` is not found, with the close matches among columns or streams."""
        available = self.keys()
        if available:
            hint = did_you_mean(key, available)
            hint = f" ({hint})" if hint else ""
            return f"{self._label()} has no column {key!r}{hint}; its columns are {available}"
        streams = sorted(name for name in self._reader().stream_names() if name)
        hint = did_you_mean(self.name or "", streams, "stream ")
        hint = f"; {hint}" if hint else (
            f"; the streams with points are {streams}" if streams else "")
        return f"{self._label()} has no committed points, so no column {key!r}{hint}"

    def stats(self) -> dict:
        """A summary of the stream: counts, times, columns and its description."""
        ends = self._reader().ends(self.store_name)
        if ends is None:
            self._refuse_if_absent()
            raise StreamNotFoundError(f"{self._label()} has no committed points")
        return summarize(self.name, *ends)

    def list_all(self) -> list[dict]:
        """A :meth:`stats` summary of every stream of the experiment with committed
        points, this one or not, the root stream (name None) first, then by name.

        On any stream, as in the reference package (``metrics("train").list_all()``),
        and on ``exp.metrics``.
        """
        store = self._reader()
        out = []
        for name in store.stream_names():
            ends = store.ends(name)
            if ends is not None:
                out.append(summarize(name or None, *ends))
        out.sort(key=lambda s: (s["name"] is not None, s["name"] or ""))
        return out

    # -- analysis -----------------------------------------------------------------

    def downsample(self, key: str, n: int = 2000, method: str = "minmax", x: str | None = None,
                   start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
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

    def index_range(self, low: float | None = None, high: float | None = None,
                    key: str = "_ts") -> tuple[int, int]:
        """``(start, stop)`` of the points whose ``key`` lies in ``[low, high)``.

        Binary search on the column: ``key`` must be non-decreasing (``_ts``,
        a step or epoch counter).  None leaves an end open.
        """
        return index_range(self.column(key), low, high)

    def between(self, low: float | None = None, high: float | None = None, key: str = "_ts",
                keys: tuple = ()) -> dict:
        """Columns of the points whose ``key`` lies in ``[low, high)``.

        ``{"index": point indices, key: ..., other columns...}``; ``keys``
        picks the columns (default all).  Views of the memory map, no copy.
        """
        start, stop = self.index_range(low, high, key)
        wanted = [key, *(k for k in keys if k != key)] if keys else []
        found = self.columns(*wanted, start=start, stop=stop)
        return {"index": np.arange(start, start + len(found[key]), dtype=np.int64), **found}

    def commit_times(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Commit time (POSIX seconds) of the snapshot of each point ``[start, stop)``.

        Read from the rows (one scan; the fields are not decoded): points
        with equal commit times were flushed together.
        """
        times = self._reader().commit_times(self.store_name, start, stop)
        if not len(times):
            self._refuse_if_absent()
        return times

    def to_pandas(self, *keys: str, start: int = 0, stop: int | None = None):
        """A ``pandas.DataFrame`` of the stream's columns (all, or ``keys``),
        indexed by point index.  Needs the ``pandas`` extra.

        Only numeric fields are columns; ``read()`` gives every field.
        """
        return frame(self._table(keys, start, stop), index="index")

    def to_arrow(self, *keys: str, start: int = 0, stop: int | None = None):
        """A ``pyarrow.Table`` of the stream's columns plus ``index``.
        Needs the ``arrow`` extra."""
        return arrow_table(self._table(keys, start, stop))

    def _table(self, keys, start, stop):
        found = self.columns(*keys, start=start, stop=stop)
        length = len(next(iter(found.values()))) if found else 0
        return {"index": np.arange(start, start + length, dtype=np.int64), **found}

    def __repr__(self) -> str:
        return f"<Stream {self.name!r} of {self._exp.prefix}>"


def summarize(name, entry, count, first, last):
    """The ``stats()`` dict of a stream from its catalog entry and end points."""
    record = entry.record
    return {
        "metricId": str(entry.sid),  # the reference package's key: the stream's id in this run
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
