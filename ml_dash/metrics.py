"""Metric streams of a live experiment: logging, flushing and reading.

``log()`` only validates and stages a point in memory; ``flush()`` commits
everything staged, across all streams, as one snapshot (see
``storage/writer.py``).  Reading sees committed points only.
"""

import threading

from .aggregation import Buffered, BufferSet
from .errors import StreamLimitError
from .reading import ExperimentReading, StreamReading
from .storage.writer import MAX_STREAMS
from .values import _last_ts, check_fields, check_info, check_keys, now, resolve_ts


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
        backlog = len(staged)
        if backlog >= session.max_backlog:
            # Before staging: a failing automatic flush then raises with this
            # point not staged, so calling log() again stores it once.  (Flushing
            # after staging raised with the point staged: a retry stored it twice.)
            session.flush()
        staged.append((self, fields, _ts))
        if _flush:
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
        # Named streams the open session may write: those in the store plus
        # the new ones handed out since it opened (see _admit).
        self._admitted = set()
        self._admitted_in = None  # the session _admitted was counted for
        self._admit_lock = threading.Lock()

    def __call__(self, name=None, *, description=None, tags=None, metadata=None):
        """The stream called ``name`` (the root for None); the same object each time.

        ``description``, ``tags`` and ``metadata`` are kept from the first
        call, and checked there: a value that cannot be stored raises
        ``TypeError`` naming the stream.  A stream past the limit of an
        experiment raises ``StreamLimitError`` here, not at a later flush.
        """
        if name is None:
            return self
        stream = self._streams.get(name)
        if stream is None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"stream names must be non-empty strings, got {name!r}")
            description, tags, metadata = check_info(f"stream {name!r}", description, tags, metadata)
            info = {"description": description, "tags": tags or [], "metadata": metadata}
            self._admit((name,))
            stream = self._streams[name] = Stream(self._exp, name, info)
        return stream

    def _admit(self, names):
        """Count new streams ``names`` against the limit, all of them or none.

        Counted are the streams the store holds plus those handed out since
        the session opened, staged or not, so that a flush never meets a
        stream it cannot create.  The root stream is not counted: it always
        has its place, and its ``log()`` needs no check.  (Counting at
        ``log()`` instead would put a lookup on every call.)  Without an
        open session nothing is counted; :meth:`_session_opened` counts the
        streams handed out then.
        """
        session = self._exp._session
        if session is None:
            return
        with self._admit_lock:
            if self._admitted_in is not session:
                self._admitted = set(session.writer.stream_names())
                self._admitted_in = session
            admitted = self._admitted
            new = [name for name in dict.fromkeys(names) if name not in admitted]
            if len(admitted) + len(new) > MAX_STREAMS:
                raise StreamLimitError(
                    f"cannot create stream {new[max(0, MAX_STREAMS - len(admitted))]!r} in "
                    f"{self._exp.prefix}: an experiment holds at most {MAX_STREAMS} named streams "
                    f"besides the root stream, and {len(admitted)} exist or are staged; nothing "
                    "of this call was staged (log such values as keys of fewer streams)")
            admitted.update(new)

    def _session_opened(self):
        """Count the stream objects handed out while no session was open.

        One that no longer fits is forgotten, so that asking for it again
        raises; a reference kept to it meets the limit at the flush.
        """
        for name in list(self._streams):
            try:
                self._admit((name,))
            except StreamLimitError:
                del self._streams[name]

    def _route(self, _ts, _flush, fields):
        """Stage a point on the root stream, routing dict values to streams.

        ``metrics.log(epoch=1, train=dict(loss=0.1))`` stages ``{epoch: 1}``
        on the root and ``{epoch: 1, loss: 0.1}`` on ``train``, all with one
        ``_ts``.  Only one level is routed; deeper dicts stay nested values.
        Everything is checked before anything is staged.
        """
        session = self._exp._open_session()
        ts = resolve_ts(_ts)
        scalars = {key: value for key, value in fields.items() if type(value) is not dict}
        check_fields(None, scalars)
        routed = [(key, value) for key, value in fields.items() if type(value) is dict]
        for key, value in routed:
            if not key:  # before _admit counts it as a stream
                raise ValueError(f"stream names must be non-empty strings, got {key!r}")
            check_keys(key, value)  # not **kwargs: any key may be in a dict
            if "_ts" in value:
                # One call has one time; a field named _ts would also land in the time column.
                raise TypeError(
                    f"stream {key!r}: '_ts' inside a routed dict; all points of one call "
                    "share one _ts, so pass it as log(_ts=...)")
        points = [(key, check_fields(key, {**scalars, **value}), ts) for key, value in routed]
        self._admit([key for key, _ in routed if key not in self._streams])
        points = [(self(key), data, ts) for key, data, ts in points]
        if scalars:
            points.insert(0, (self, scalars, ts))
        staged = session.staged
        if len(staged) >= session.max_backlog:
            session.flush()  # before staging, as in Stream.log
        staged.extend(points)
        if _flush:
            session.flush()
        return self

    def list_all(self):
        """A ``stats()`` summary of every stream of the experiment, by name."""
        return self._list_streams(self._store())

    def __repr__(self):
        return f"<Metrics of {self._exp.prefix}>"
