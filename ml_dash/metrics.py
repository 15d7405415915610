"""``exp.metrics``: the root stream, and the way to every named stream.

``exp.metrics("train")`` gives the same :class:`~ml_dash.stream.Stream`
each time; ``exp.metrics.log(epoch=1, train=dict(loss=0.1))`` routes dict
values to streams.  A live experiment counts the streams it hands out
against the limit of an experiment; a view only reads them.
"""

from __future__ import annotations

import threading
from typing import Any

from .aggregation import BufferSet
from .errors import StreamLimitError
from .names import stream_label
from .storage import MAX_STREAMS
from .stream import Stream
from .timestamps import resolve_ts
from .values import check_fields, check_info, check_keys, check_name


class Metrics(Stream):
    """The root stream, and the way to every named stream: ``metrics("train")``."""

    # The root's buffer is a BufferSet: called like a stream's buffer(), and more.
    buffer: BufferSet

    def __init__(self, owner: Any) -> None:
        super().__init__(owner, None, {})
        self._streams: dict[str, Stream] = {}
        #: ``buffer(**values)`` for the root stream, ``buffer.log_summary()``, ``buffer.peek()``
        self.buffer = BufferSet(self)
        # Named streams the open session may write: those in the store plus
        # the new ones handed out since it opened (see _admit).
        self._admitted: set[str] = set()
        self._admitted_in = None  # the session _admitted was counted for
        self._admit_lock = threading.Lock()

    def __call__(self, name: str | None = None, *, description: str | None = None,
                 tags: list | None = None, metadata: dict | None = None) -> Stream:
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
            check_name("stream names", name)
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
        if session is None or session.forked:
            # A forked child writes nothing (its staging refuses points), so it
            # counts nothing, and never takes this lock, which a thread of the
            # parent that is gone in the child may have held at the fork.
            return
        with self._admit_lock:
            if self._admitted_in is not session:
                self._admitted = set(session.writer.stream_names())
                self._admitted_in = session
            admitted = self._admitted
            new = [name for name in dict.fromkeys(names) if name not in admitted]
            if len(admitted) + len(new) > MAX_STREAMS:
                raise StreamLimitError(
                    f"cannot create {stream_label(new[max(0, MAX_STREAMS - len(admitted))])} in "
                    f"{self._exp.prefix}: an experiment holds at most {MAX_STREAMS} named streams "
                    f"and tracks together besides the root stream, and {len(admitted)} exist or "
                    "are staged; nothing of this call was staged (log such values as keys of "
                    "fewer streams)")
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
        if type(_ts) is dict:  # log({"loss": 0.1}, train=dict(...)): the dict's items join the keywords
            return self._log_dict(_ts, _flush, fields)
        session = self._exp._open_session()
        ts = resolve_ts(_ts)
        scalars = {key: value for key, value in fields.items() if type(value) is not dict}
        check_fields(None, scalars)
        routed = [(key, value) for key, value in fields.items() if type(value) is dict]
        for key, value in routed:
            if not key:  # before _admit counts it as a stream
                raise ValueError(f"stream names must be non-empty strings, got {key!r}")
            if key not in self._streams:
                check_name("stream names", key)
            check_keys(key, value)  # not **kwargs: any key may be in a dict
            if "_ts" in value:
                # One call has one time; a field named _ts would also land in the time column.
                raise TypeError(
                    f"stream {key!r}: '_ts' inside a routed dict; all points of one call "
                    "share one _ts, so pass it as log(_ts=...)")
        points = [(key, check_fields(key, {**scalars, **value}), ts) for key, value in routed]
        self._admit([key for key, _ in routed if key not in self._streams])
        points = [(self(key)._spec, data, ts) for key, data, ts in points]
        if scalars:
            points.insert(0, (self._spec, scalars, ts))
        if len(session.staged) >= session.max_backlog:
            session.flush()  # before staging, as in Stream.log
        session.staged.extend(points)  # not a queue read before: see Stream.log
        if _flush:
            session.flush()
        return self

    def names(self) -> list[str | None]:
        """Names of the streams with committed points (None for the root)."""
        return [name or None for name in self._reader().stream_names()]

    def __repr__(self) -> str:
        return f"<Metrics of {self._exp.prefix}>"
