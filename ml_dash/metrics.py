"""Metric streams of a live experiment: logging, flushing and reading.

``log()`` only validates and stages a point in memory; ``flush()`` commits
everything staged, across all streams, as one snapshot (see
``storage/writer.py``).  Reading sees committed points only.
"""

from .aggregation import Buffered, BufferSet
from .reading import ExperimentReading, StreamReading
from .values import _last_ts, check_fields, convert, now, resolve_ts


# Values that need no conversion: checked in one C-level pass by log().
_PLAIN_TYPES = frozenset((float, int, str, bool, type(None)))


class Stream(Buffered, StreamReading):
    """One named series of points, e.g. ``exp.metrics("train")``."""

    def __init__(self, experiment, name, info):
        self._exp = experiment
        self.name = name
        self.store_name = name or ""
        self.info = info

    def _store(self):
        return self._exp._reader()

    def log(self, _ts=None, _flush=False, **fields):
        """Stage one point; returns the stream so calls can be chained.

        ``_ts``: the point's time (default now; ``-1`` reuses the last one
        used in this thread).  ``_flush=True`` also commits at once.
        """
        # The hot path of a training loop: kept inline and flat on purpose
        # (bench/core.py measures it against a plain list append).
        session = self._exp._session
        if session is None:
            self._exp._open_session()  # raises: the run is not started
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
        else:
            _ts = resolve_ts(_ts)
        staged = session.staged
        staged.append((self, fields, _ts))
        backlog = len(staged)
        if _flush or backlog >= session.max_backlog:
            session.flush()
        return self

    def flush(self):
        """Commit everything staged in the experiment, across all streams."""
        session = self._exp._session
        if session is None:
            self._exp._open_session()  # raises: the run is not open
        session.flush()
        return self

    def __repr__(self):
        return f"<Stream {self.name!r} of {self._exp.prefix}>"


class Metrics(Stream, ExperimentReading):
    """The root stream, and the way to every named stream: ``metrics("train")``."""

    def __init__(self, experiment):
        super().__init__(experiment, None, {})
        self._streams = {}
        #: ``buffer(**values)`` for the root stream, ``buffer.log_summary()``, ``buffer.peek()``
        self.buffer = BufferSet(self)

    def __call__(self, name=None, *, description=None, tags=None, metadata=None):
        """The stream called ``name`` (the root for None); the same object each time.

        ``description``, ``tags`` and ``metadata`` are kept from the first call.
        """
        if name is None:
            return self
        stream = self._streams.get(name)
        if stream is None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"stream names must be non-empty strings, got {name!r}")
            info = {"description": description, "tags": list(tags or ()), "metadata": metadata}
            stream = self._streams[name] = Stream(self._exp, name, info)
        return stream

    def _route(self, _ts, _flush, fields):
        """Stage a point on the root stream, routing dict values to streams.

        ``metrics.log(epoch=1, train=dict(loss=0.1))`` stages ``{epoch: 1}``
        on the root and ``{epoch: 1, loss: 0.1}`` on ``train``, all with one
        ``_ts``.  Only one level is routed; deeper dicts stay nested values.
        """
        session = self._exp._open_session()
        ts = resolve_ts(_ts)
        scalars = {key: value for key, value in fields.items() if type(value) is not dict}
        check_fields(None, scalars)
        routed = [(key, value) for key, value in fields.items() if type(value) is dict]
        for key, value in routed:
            if "_ts" in value:
                # One call has one time; a field named _ts would also land in the time column.
                raise TypeError(
                    f"stream {key!r}: '_ts' inside a routed dict; all points of one call "
                    "share one _ts, so pass it as log(_ts=...)")
        points = [(self(key), check_fields(key, {**scalars, **value}), ts) for key, value in routed]
        if scalars:
            points.insert(0, (self, scalars, ts))
        session.staged.extend(points)
        if _flush or len(session.staged) >= session.max_backlog:
            session.flush()
        return self

    def list_all(self):
        """A ``stats()`` summary of every stream of the experiment, by name."""
        return self._list_streams(self._store())

    def __repr__(self):
        return f"<Metrics of {self._exp.prefix}>"
