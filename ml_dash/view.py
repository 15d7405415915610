"""Read-only views of experiments, for analysis scripts in any process.

A view never takes the writer lock and never holds a read transaction
between calls, so it neither blocks nor slows a live writer; it sees only
flushed snapshots.

A view is the same :class:`~ml_dash.metrics.Metrics`, ``Params``, ``Logs``,
``Files`` and ``Tracks`` objects as a live experiment's, owned by a view that has no
session: their write methods raise ``ExperimentError`` (opened read-only).

A view holds a :class:`~ml_dash.storage.Store` opened for reading: a
reference to the run's shared LMDB environment (whose ``data.mdb`` and
``lock.mdb`` stay open while anyone in the process uses it).  ``close()``
or the ``with`` block releases it; a view that is just dropped releases it
when it is garbage collected, that is when the view and every stream,
params, logs or files object taken from it (each holds the view) are gone.
Column arrays keep their own mappings and outlive all of it.
"""

from __future__ import annotations

from typing import Any

from .errors import ExperimentError
from .files import Files
from .logs import Logs
from .metrics import Metrics
from .params import Params
from .paths import no_run_message, parse_prefix, resolve_root
from .storage import Store, writer_alive
from .timestamps import iso
from .tracks import Tracks


def load(prefix: str, dash_root: str | None = None) -> ExperimentView:
    """A read-only :class:`ExperimentView` of the experiment ``prefix``.

    ``dash_root`` defaults to ``$ML_DASH_ROOT``, else ``.dash``.  Raises
    ``FileNotFoundError`` naming the prefix, the absolute folder searched
    and the close matches when there is no such run.
    """
    dash_root = resolve_root(dash_root)
    segments, path = parse_prefix(prefix, dash_root)
    try:
        store = Store.open(path)
    except FileNotFoundError:
        raise FileNotFoundError(no_run_message(prefix, dash_root)) from None
    return ExperimentView("/".join(segments), path, store)


class _ReadOnly:
    """What the objects of a view read through: its store, and no session.

    Apart from the view itself, so that the view's metrics, params, logs and
    files refer to it without a reference cycle: a view dropped by its last
    reference is released at once, without waiting for the cycle collector.
    """

    __slots__ = ("prefix", "path", "_store", "__weakref__")
    _session = None  # a view never writes

    def __init__(self, prefix, path, store):
        self.prefix = prefix
        self.path = path
        self._store = store

    def _reader(self):
        return self._store.reader

    def _streams_are_final(self):
        """True once the run has ended (``COMPLETED``, ``FAILED``, ``CANCELLED``).

        A stale run (``RUNNING``, its writer gone) is not: a preempted job
        that is requeued continues it, and may log the stream then.
        """
        return self._store.reader.experiment().get("status") not in (None, "RUNNING")

    def _open_session(self):
        raise ExperimentError(
            f"experiment {self.prefix!r} was opened read-only with load(); write to it "
            "through 'with Experiment(prefix=...).run as exp:' in the process that runs it")


class ExperimentView:
    """What ``ml_dash.load()`` returns: metrics, params, logs, files, status and
    description of a run."""

    def __init__(self, prefix: str, path: str, store: Any) -> None:
        self.prefix = prefix
        self.path = path
        self._store = store
        owner = _ReadOnly(prefix, path, store)  # the same objects as a live run's, without a writer
        self.metrics = Metrics(owner)
        self.params = Params(owner)
        self.logs = Logs(owner)
        self.files = Files(owner)
        self.tracks = Tracks(owner, self.metrics)

    def _record(self):
        return self._store.reader.experiment()

    status: str | None = property(lambda self: self._record().get("status"))  # type: ignore[assignment]
    description = property(lambda self: self._record().get("description"))
    tags = property(lambda self: self._record().get("tags") or [])
    metadata = property(lambda self: self._record().get("metadata"))

    notes = property(lambda self: self._record().get("notes"))

    @property
    def error(self) -> dict | None:
        """``{"type", "message", "traceback"}`` of the exception that failed the last
        launch, None when it did not fail by one."""
        return self._record().get("error")

    @property
    def launches(self) -> list[dict]:
        """The launches of the run, oldest first: ``startedAt``, ``endedAt`` (ISO),
        ``status``, ``pid``, ``host``, ``command`` (and ``error`` for a failed one).

        Bounded: the first launch and the latest ones (see ``launches.MAX_LAUNCHES``);
        ``info["launchCount"]`` counts them all.  A run written before launches
        were recorded has none.
        """
        return _iso_launches(self._record())

    @property
    def info(self) -> dict:
        """The whole experiment record, with times as ISO strings and ``stale``."""
        record = self._record()
        for key in ("createdAt", "startedAt", "endedAt"):
            record[key] = iso(record.get(key))
        record["launches"] = _iso_launches(record)
        record["stale"] = _is_stale(record, self.path)
        return record

    @property
    def stale(self) -> bool:
        """True for a ``RUNNING`` run whose writer process is gone."""
        return _is_stale(self._record(), self.path)

    def close(self) -> None:
        """Release the view's handle on the store now; closing again does nothing.

        Without it the handle is released when the view and everything taken
        from it are garbage collected.  Column arrays read before stay valid.
        """
        self._store.close()

    def __enter__(self) -> ExperimentView:
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<ExperimentView {self.prefix} {self.status}>"


def _iso_launches(record):
    launches = [dict(entry) for entry in record.get("launches") or []]
    for entry in launches:
        for key in ("startedAt", "endedAt"):
            entry[key] = iso(entry.get(key))
    return launches


def _is_stale(record, path):
    """A ``RUNNING`` run whose writer holds the writer lock no more."""
    if record.get("status") != "RUNNING":
        return False
    writer = record.get("writer") or {}
    return not writer_alive(path, writer.get("pid"), writer.get("host"))
