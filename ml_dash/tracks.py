"""Tracks: time-stamped entries per topic, ``exp.tracks("robot/pose")``.

A track is a series of entries ordered by ``_ts``, one entry per ``_ts``:
appends with the same ``_ts`` merge into one entry (the camera frame, the
pose and the lidar scan of one instant), whether they are still staged or
the entry was committed by an earlier flush.  It is stored as a stream is
(a sub-database keyed by entry index, numeric fields also in float64
columns), so finding the entry at a time is a binary search on the
memory-mapped ``_ts`` column.  ``append()`` validates and stages; a flush
(``exp.flush()``, ``exp.tracks.flush()``, any stream's or track's
``flush()``) commits metrics and tracks in one snapshot.

The same classes serve a live run and a ``load()`` view, whose write
methods raise ``ExperimentError`` (opened read-only), as its streams do.
"""

from __future__ import annotations

import io
import math
import numbers
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from .arrays import require
from .errors import ColumnNotFoundError, EntryNotFoundError, StreamLimitError
from .names import TrackName, did_you_mean
from .storage import StreamSpec
from .stream import check_range
from .timestamps import _last_ts, iso, now, resolve_ts
from .values import MAX_DEPTH, check_info, check_name, check_utf8, convert_for, strict_json

FORMATS = ("json", "jsonl", "parquet", "mocap")
PAGE = 4096  # entries decoded per read transaction
AUTO_STEP = 1e-6  # seconds between two automatic _ts that would otherwise be equal
_SCALARS = frozenset((float, int, str, bool, type(None)))
_NO_TIMES = np.empty(0)
_NO_TIMES.flags.writeable = False


class Tracks:
    """``exp.tracks``: ``exp.tracks(topic)`` gives the :class:`Track`, ``flush()`` commits."""

    def __init__(self, owner: Any, metrics: Any) -> None:
        self._exp = owner
        self._metrics = metrics  # counts new tracks against the limit shared with streams
        self._tracks: dict[str, Track] = {}
        self._auto_lock = threading.Lock()
        self._last_auto = -math.inf

    def __call__(self, topic: str, *, description: str | None = None, tags: list | None = None,
                 metadata: dict | None = None) -> Track:
        """The track of ``topic`` (any non-empty string, ``"robot/pose"``); the same object each time.

        ``description``, ``tags`` and ``metadata`` (``fps`` is used by the
        ``mocap`` format) are kept from the first call.
        """
        track = self._tracks.get(topic)
        if track is None:
            if not isinstance(topic, str) or not topic:
                raise ValueError(f"track topics must be non-empty strings, got {topic!r}")
            check_name("track topics", topic)
            description, tags, metadata = check_info(f"track {topic!r}", description, tags, metadata)
            info = {"description": description, "tags": tags or [], "metadata": metadata}
            self._metrics._admit((TrackName(topic),))
            track = self._tracks[topic] = Track(self, topic, info)
        return track

    def flush(self) -> Tracks:
        """Commit everything staged in the experiment (tracks and metrics) as one snapshot."""
        session = self._exp._session
        if session is None:
            self._exp._open_session()  # raises: not started, or read-only
        session.flush()
        return self

    def names(self) -> list[str]:
        """Topics of the tracks with committed entries, sorted."""
        return sorted(name.topic for name in self._exp._reader().track_names())

    def _auto_ts(self) -> float:
        """Now, but strictly after the last automatic ``_ts`` of this experiment
        (taken by the session as it stages the entry: see ``Session.stage_entry``)."""
        with self._auto_lock:
            ts = now()
            if ts <= self._last_auto:
                ts = self._last_auto + AUTO_STEP
            self._last_auto = ts
        _last_ts.value = ts
        return ts

    def _session_opened(self) -> None:
        """Count the tracks handed out before the run started (see ``Metrics._session_opened``)."""
        for topic in list(self._tracks):
            try:
                self._metrics._admit((TrackName(topic),))
            except StreamLimitError:
                del self._tracks[topic]

    def __repr__(self) -> str:
        return f"<Tracks of {self._exp.prefix}>"


class Track:
    """One topic's entries: ``append()``, ``read()``, ``slice()``, columns."""

    def __init__(self, tracks: Tracks, topic: str, info: dict) -> None:
        self._tracks = tracks
        self._exp = tracks._exp
        self.topic = topic
        self._name = TrackName(topic)
        self.info = info
        self._spec = StreamSpec(self._name, info)

    def _reader(self):
        return self._exp._reader()

    def _label(self) -> str:
        return f"track {self.topic!r}"

    # -- writing ------------------------------------------------------------------

    def append(self, _data: dict | None = None, /, _ts: float | None = None, **fields: Any) -> Track:
        """Stage one entry; returns the track, so calls can be chained.

        ``_ts`` (or ``timestamp``): absent, now (strictly after the last
        automatic one of the experiment); a number, that time; ``-1``, the
        last ``_ts`` used in this thread by any track or stream.  An entry with the ``_ts`` of
        one staged or of the last committed entry is merged into it (later
        fields win); one older than the last committed entry raises
        ``ValueError``.  Nested dicts are flattened to ``a.b`` fields; numpy
        arrays become lists, numpy scalars numbers.  A value that cannot be
        stored raises ``TypeError`` naming the topic, key and type, and
        nothing is staged.
        """
        session = self._exp._session
        if session is None:
            session = self._exp._open_session()  # raises: not started, or read-only
        if _data is not None:
            if not isinstance(_data, dict):
                raise TypeError(f"{self._label()}: append() takes a dict of fields or keywords, "
                                f"got {type(_data).__name__}")
            fields = {**_data, **fields}
        for spelling in ("timestamp", "_ts"):  # "_ts" can only come in the positional dict
            if spelling in fields:
                # "timestamp" is the reference's documented spelling of the time (read() shows
                # the time under that name).  (Rejected: a field of that name, which read()
                # would show in place of the entry's time.)
                if _ts is not None:
                    raise TypeError(f"{self._label()}: give the time once, as _ts= or as "
                                    "timestamp=")
                _ts = fields.pop(spelling)
        data = fields  # a fresh dict of plain values, the common case, is staged as it is
        for key, value in fields.items():
            kind = type(value)
            if kind not in _SCALARS or _data is not None:  # a dict's keys are checked too
                data = {}
                flatten(self._label(), fields, "", data, 0)
                break
            # isascii() reads a flag CPython keeps: text that is not ASCII alone is encoded
            if not key.isascii() or kind is str and not value.isascii():
                check_utf8(self._label(), key, value)
        else:
            if "" in fields:
                flatten(self._label(), fields, "", {}, 0)  # raises, naming the field
        session.stage_entry(self._spec, data, None if _ts is None else resolve_ts(_ts),
                            self._tracks._auto_ts)
        if session.write_through:
            session.flush()
        return self

    def flush(self) -> Track:
        """Commit everything staged in the experiment, as :meth:`Tracks.flush`."""
        self._tracks.flush()
        return self

    # -- reading ------------------------------------------------------------------

    def __len__(self) -> int:
        """Committed entries."""
        return self._reader().count(self._name)

    def timestamps(self) -> np.ndarray:
        """The committed ``_ts`` of every entry: a read-only view of the memory map, increasing."""
        values = self._reader().column(self._name, "_ts", 0, None)
        return _NO_TIMES if values is None else values

    def keys(self) -> list[str]:
        """Names of the numeric columns (and ``_ts``)."""
        return self._reader().column_keys(self._name)

    def column(self, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Committed values of numeric field ``key`` (or ``_ts``) for entries ``[start, stop)``:
        a read-only float64 view of the memory map, NaN where an entry lacks it."""
        values = self._reader().column(self._name, key, start, stop)
        if values is None:
            keys = self.keys()
            hint = did_you_mean(key, keys)
            raise ColumnNotFoundError(f"{self._label()} has no column {key!r}"
                                      f"{f' ({hint})' if hint else ''}; its columns are {keys}")
        return values

    def index_range(self, start_timestamp: float | None = None,
                    end_timestamp: float | None = None) -> tuple[int, int]:
        """``(start, stop)`` entry indices of ``start_timestamp <= _ts <= end_timestamp``
        (binary search; None leaves an end open)."""
        return _bounds(self.timestamps(), start_timestamp, end_timestamp)

    def _entries(self, start: int, stop: int, columns: list | None = None) -> Iterator[dict]:
        """Entries ``[start, stop)`` as ``{"timestamp": ts, **fields}``, read a page at a time."""
        reader = self._reader()
        for first in range(start, stop, PAGE):
            rows, _ = reader.page(self._name, first, min(PAGE, stop - first))
            for _, _, ts, data in rows:
                if columns is None:
                    yield {"timestamp": ts, **data}
                else:
                    yield {"timestamp": ts, **{key: data[key] for key in columns if key in data}}

    def read(self, start_timestamp: float | None = None, end_timestamp: float | None = None,
             columns: list | None = None, format: str = "json") -> Any:
        """Committed entries with ``start_timestamp <= _ts <= end_timestamp``.

        ``format``: ``"json"`` (``{"entries": [{"timestamp", **fields}], "count"}``),
        ``"jsonl"`` (bytes, one JSON object a line), ``"parquet"`` (bytes;
        the ``arrow`` extra) or ``"mocap"`` (a dict of ``metadata``,
        ``channels`` and ``frames``).  ``columns`` keeps only those fields.
        """
        if format not in FORMATS:
            raise ValueError(f"{self._label()}: format must be one of {', '.join(FORMATS)}; "
                             f"got {format!r}")
        if columns is not None and (isinstance(columns, str) or not all(
                isinstance(column, str) for column in columns)):
            raise TypeError(f"{self._label()}: columns must be a list of field names, got {columns!r}")
        start, stop = self.index_range(start_timestamp, end_timestamp)
        entries = list(self._entries(start, stop, None if columns is None else list(columns)))
        if format == "json":
            return {"entries": entries, "count": len(entries)}
        if format == "jsonl":
            return "\n".join(map(strict_json, entries)).encode("utf-8")
        if format == "parquet":
            return _parquet(self._label(), entries)
        return self._mocap(entries)

    def _mocap(self, entries: list) -> dict:
        # What the track was created with (a view's track object was given nothing).
        info = {**self._stored_info(), **{k: v for k, v in self.info.items() if v}}
        metadata = info.get("metadata") or {}
        first = entries[0]["timestamp"] if entries else 0
        last = entries[-1]["timestamp"] if entries else 0
        channels = sorted({key for entry in entries for key in entry if key != "timestamp"})
        if "time" in channels:
            # (Rejected: letting the field win, which showed it as the frame's time, or
            # renaming it, which a player would not know to look for.)
            raise ValueError(f"{self._label()}: its field 'time' would replace each frame's "
                             "time in the mocap format; read it with columns= that leave it "
                             "out, or in another format")
        return {
            "version": "1.0",
            "metadata": {"topic": self.topic, "description": info.get("description"),
                         "tags": info.get("tags") or [], "fps": metadata.get("fps", 30),
                         "duration": last - first, "frameCount": len(entries),
                         "startTime": first, "endTime": last},
            "channels": channels,
            "frames": [{"time": entry.pop("timestamp"), **entry} for entry in entries],
        }

    def _stored_info(self) -> dict:
        ends = self._reader().ends(self._name)
        return {} if ends is None else ends[0].record

    def read_page(self, start_index: int = 0, limit: int = 1000) -> dict:
        """Committed entries by index, paged as ``Stream.read()`` pages points:
        ``{"data": [{"index", "data": {...fields, "_ts"}, "createdAt"}], "startIndex",
        "endIndex", "total", "hasMore"}``."""
        check_range(start_index, limit)
        rows, has_more = self._reader().page(self._name, start_index, limit)
        data = [{"index": index, "data": {**fields, "_ts": ts}, "createdAt": iso(created)}
                for index, created, ts, fields in rows]
        return {"data": data, "startIndex": start_index, "endIndex": start_index + len(data) - 1,
                "total": len(data), "hasMore": has_more}

    def list_entries(self) -> list[dict]:
        """Every committed entry, as ``read()["entries"]``."""
        return self.read()["entries"]

    def slice(self, start_timestamp: float | None = None,
              end_timestamp: float | None = None) -> TrackSlice:
        """The entries with ``start_timestamp <= _ts <= end_timestamp`` (None: open end):
        iterable, with ``len()`` and ``findByTime()``."""
        return TrackSlice(self, start_timestamp, end_timestamp)

    def stats(self) -> dict:
        """``topic``, ``count``, ``firstTimestamp``, ``lastTimestamp``, ``columns`` and the
        track's description, tags and metadata (``count`` 0 when nothing is committed)."""
        ends = self._reader().ends(self._name)
        record = {} if ends is None else ends[0].record
        return {"topic": self.topic, "count": 0 if ends is None else ends[1],
                "firstTimestamp": None if ends is None else ends[2][1],
                "lastTimestamp": None if ends is None else ends[3][1],
                "columns": [] if ends is None else [k for k in ends[0].columns if k != "_ts"],
                "description": record.get("description"), "tags": record.get("tags") or [],
                "metadata": record.get("metadata")}

    def __repr__(self) -> str:
        return f"<Track {self.topic!r} of {self._exp.prefix}>"


class TrackSlice:
    """The entries of a track in a time range, fixed when first used.

    Iterable (again and again), ``len()``, and ``findByTime(t)``: the entry
    with the largest ``_ts <= t`` (a list of times gives a list of
    entries), found by binary search on the ``_ts`` column; a time before
    the slice's first entry raises :class:`~ml_dash.EntryNotFoundError`
    (a ``KeyError``).  Entries are read from the store when asked for.
    """

    def __init__(self, track: Track, start_timestamp: float | None = None,
                 end_timestamp: float | None = None) -> None:
        self._track = track
        self._start_timestamp = start_timestamp
        self._end_timestamp = end_timestamp
        _bounds(_NO_TIMES, start_timestamp, end_timestamp)  # checks the bounds at the call
        self._range: tuple[int, int] | None = None
        self._ts = _NO_TIMES

    def _resolve(self) -> tuple[int, int]:
        if self._range is None:
            ts = self._track.timestamps()
            start, stop = _bounds(ts, self._start_timestamp, self._end_timestamp)
            self._ts = ts[start:stop]
            self._range = (start, stop)
        return self._range

    def __len__(self) -> int:
        start, stop = self._resolve()
        return stop - start

    def __iter__(self) -> Iterator[dict]:
        start, stop = self._resolve()
        return self._track._entries(start, stop)

    def findByTime(self, timestamp: Any) -> Any:  # noqa: N802 (the reference's name)
        """The entry with the largest ``_ts <= timestamp``; for a list of times, a list of them."""
        start, stop = self._resolve()
        many = isinstance(timestamp, (list, tuple, np.ndarray))
        times = [_time(t) for t in timestamp] if many else [_time(timestamp)]
        if not times:
            return []
        if start == stop:
            raise EntryNotFoundError(f"No entries in track slice of track {self._track.topic!r} "
                                     f"(start={self._start_timestamp}, end={self._end_timestamp})")
        # One time (the common call) is searched as a scalar: a list costs an array more.
        found = [int(self._ts.searchsorted(times[0], "right")) - 1] if not many else \
            (self._ts.searchsorted(times, "right") - 1).tolist()
        if min(found) < 0:
            early = times[found.index(min(found))]
            raise EntryNotFoundError(
                f"No entry found with timestamp <= {early} in track {self._track.topic!r}: "
                f"the slice's first entry is at {float(self._ts[0])}")
        rows = self._track._reader().rows_at(self._track._name, [start + i for i in found])
        entries = [{"timestamp": ts, **data} for _, _, ts, data in rows]
        return entries if many else entries[0]

    def __repr__(self) -> str:
        return (f"TrackSlice(topic={self._track.topic!r}, start={self._start_timestamp}, "
                f"end={self._end_timestamp})")


def _time(value: Any) -> float:
    """A query time as a float; ``TypeError``/``ValueError`` for anything but a real number."""
    if type(value) is float and value == value:  # the common case first: a float, not NaN
        return value
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, numbers.Real):
        raise TypeError(f"findByTime: a time must be a number, got {type(value).__name__} {value!r}")
    try:
        time = float(value)
    except OverflowError:  # an int past float's range (math.isnan would raise it bare)
        raise ValueError(f"findByTime: a time must fit a float, got {_magnitude(value)}") from None
    if math.isnan(time):
        raise ValueError("findByTime: a time must be a number, got NaN")
    return time


def _magnitude(value: Any) -> str:
    """How a number too large for a float is named in a message (not its thousand digits)."""
    bits = value.bit_length() if isinstance(value, int) else None
    return f"an int of {bits} bits" if bits is not None else f"a {type(value).__name__} out of range"


def _bounds(ts: np.ndarray, start: Any, end: Any) -> tuple[int, int]:
    """``(first, stop)`` of the entries with ``start <= ts <= end`` in the increasing ``ts``."""
    for name, bound in (("start_timestamp", start), ("end_timestamp", end)):
        if bound is None:
            continue
        if isinstance(bound, (bool, str, bytes)) or not isinstance(bound, numbers.Real):
            raise TypeError(f"{name} must be a number or None, got {type(bound).__name__} {bound!r}")
        try:
            nan = math.isnan(bound)
        except OverflowError:  # an int past float's range: numpy could not search for it
            raise ValueError(f"{name} must fit a float, got {_magnitude(bound)}") from None
        if nan:
            raise TypeError(f"{name} must be a number or None, got {type(bound).__name__} {bound!r}")
    first = 0 if start is None else int(np.searchsorted(ts, start, side="left"))
    stop = len(ts) if end is None else int(np.searchsorted(ts, end, side="right"))
    return first, max(first, stop)


def flatten(label: str, fields: dict, prefix: str, out: dict, depth: int) -> None:
    """Put ``fields`` into ``out`` with nested dicts as ``a.b`` keys, values made storable.

    numpy arrays (and tensors: anything with ``tolist()`` and ``ndim >= 1``)
    become lists; the rest is converted as ``log()`` converts values.  An
    empty dict stays a value ``{}``; a key met twice (``"a.b"`` and
    ``{"a": {"b": ...}}``) is a ``TypeError`` naming it.
    """
    if depth >= MAX_DEPTH:
        raise TypeError(f"{label}: field {prefix[:80]!r} is nested more than {MAX_DEPTH} levels deep")
    for key, value in fields.items():
        if type(key) is not str or not key:
            raise TypeError(f"{label}: field names must be non-empty strings, got {key!r} "
                            f"({type(key).__name__})")
        name = prefix + key
        if name in out:
            # (Rejected: the later value winning, as a dict literal would: one of
            # the two was then dropped without a word.)
            raise TypeError(f"{label}: field {name[:80]!r} is given twice, once as a dotted "
                            "key and once nested; give it once")
        if not key.isascii():
            check_utf8(label, name, None)
        if type(value) in _SCALARS:
            if type(value) is str and not value.isascii():
                check_utf8(label, name, value)
            out[name] = value
        elif isinstance(value, dict) and value:
            flatten(label, value, name + ".", out, depth + 1)
        elif isinstance(value, dict):
            out[name] = {}  # no field to flatten into: kept as the value it was, not dropped
        else:
            tolist = getattr(value, "tolist", None)
            if callable(tolist) and getattr(value, "ndim", 0) >= 1:
                value = tolist()
            out[name] = value = convert_for(label, name, value, depth)
            check_utf8(label, name, value)


def _parquet(label: str, entries: list) -> bytes:
    """Parquet bytes of ``entries``, one column per field (None where an entry lacks it).

    Built column by column, so that a field Arrow cannot type (an int in one
    entry, a str in another) is named in a ``ValueError``.  (Rejected:
    storing such a column as text, which would read back numbers as
    strings without a word.)
    """
    pa = require("pyarrow", "arrow")
    parquet = require("pyarrow.parquet", "arrow")
    keys = list(dict.fromkeys(key for entry in entries for key in entry)) or ["timestamp"]
    arrays = []
    for key in keys:
        values = [entry.get(key) for entry in entries]
        try:
            arrays.append(pa.array(values, pa.float64() if key == "timestamp" else None))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            kinds = sorted({type(value).__name__ for value in values if value is not None})
            raise ValueError(f"{label}: field {key!r} holds values of types {', '.join(kinds)}, "
                             f"which one Parquet column cannot hold ({exc}); read it with "
                             "columns= that leave it out, or in another format") from None
    table = pa.Table.from_arrays(arrays, names=keys)
    buffer = io.BytesIO()
    try:
        parquet.write_table(table, buffer, compression="zstd")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # an empty dict: a struct of nothing
        raise ValueError(f"{label}: cannot write these entries as Parquet ({exc}); read them "
                         "with columns= that leave that field out, or in another format") from None
    return buffer.getvalue()
