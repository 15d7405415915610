"""Read-only views of experiments, for analysis scripts in any process.

A view never takes the writer lock and never holds a read transaction
between calls, so it neither blocks nor slows a live writer; it sees only
flushed snapshots.

A view holds a reference to the run's shared LMDB environment (whose
``data.mdb`` and ``lock.mdb`` stay open while anyone in the process uses it).  ``close()`` or the ``with`` block releases it; a view that is just
dropped releases it when its reader is garbage collected, that is when the
view and every stream, params, logs or files object taken from it are gone.
The reference belongs to the reader rather than to the view object because
``load(p).metrics("train").read()`` still reads after the view itself is
dropped.  Column arrays keep their own mappings and outlive all of it.
"""

from .files import FilesReading
from .logs import LogsReading
from .params import ParamsReading, stored_params
from .paths import parse_prefix
from .reading import ExperimentReading, StreamReading, iso
from .storage import Lease, StoreReader, acquire, release, writer_alive


def load(prefix, dash_root=".dash"):
    """A read-only :class:`ExperimentView` of the experiment ``prefix``.

    Raises ``FileNotFoundError`` naming the prefix when there is no such run.
    """
    segments, path = parse_prefix(prefix, dash_root)
    try:
        env = acquire(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no experiment {prefix!r} under {dash_root!r}") from None
    try:
        store = StoreReader(env, path)
    except BaseException:
        release(env)
        raise
    return ExperimentView("/".join(segments), path, store, Lease(env, store))


class StreamView(StreamReading):
    """Read-only access to one stream of a view."""

    def __init__(self, store, name):
        self._reader = store
        self.name = name
        self.store_name = name or ""

    def _store(self):
        return self._reader

    def __repr__(self):
        return f"<StreamView {self.name!r}>"


class MetricsView(StreamView, ExperimentReading):
    """The root stream of a view; ``metrics("train")`` gives the others."""

    def __init__(self, store):
        super().__init__(store, None)
        self._streams = {}

    def __call__(self, name=None):
        if name is None:
            return self
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = StreamView(self._reader, name)
        return stream

    def names(self):
        """Names of the streams with committed points (None for the root)."""
        return [name or None for name in self._reader.stream_names()]

    def list_all(self):
        return self._list_streams(self._reader)


class ParamsView(ParamsReading):
    """``view.params.get(flatten=True)``."""

    def __init__(self, store):
        self._store = store

    def _load(self):
        return stored_params(self._store)


class LogsView(LogsReading):
    """``view.logs.read(start_index, limit, level=None)``."""

    def __init__(self, store):
        self._store = store

    def _reader(self):
        return self._store


class FilesView(FilesReading):
    """``view.files.list()``, ``view.files("models/a.pt").download(to=...)``."""

    def __init__(self, store, directory, path=""):
        self._store = store
        self._directory = directory
        self._path = path

    def _reader(self):
        return self._store

    def _handle(self, path):
        return FilesView(self._store, self._directory, path)


class ExperimentView:
    """What ``ml_dash.load()`` returns: metrics, params, logs, files, status and
    description of a run."""

    def __init__(self, prefix, path, store, lease):
        self.prefix = prefix
        self.path = path
        self._store = store
        self._lease = lease
        self.metrics = MetricsView(store)
        self.params = ParamsView(store)
        self.logs = LogsView(store)
        self.files = FilesView(store, path)

    def _record(self):
        return self._store.experiment()

    status = property(lambda self: self._record().get("status"))
    description = property(lambda self: self._record().get("description"))
    tags = property(lambda self: self._record().get("tags") or [])
    metadata = property(lambda self: self._record().get("metadata"))

    @property
    def info(self):
        """The whole experiment record, with times as ISO strings and ``stale``."""
        record = self._record()
        for key in ("createdAt", "startedAt", "endedAt"):
            record[key] = iso(record.get(key))
        record["stale"] = _is_stale(record, self.path)
        return record

    @property
    def stale(self):
        """True for a ``RUNNING`` run whose writer process is gone."""
        return _is_stale(self._record(), self.path)

    def close(self):
        """Release the view's handle on the store now; closing again does nothing.

        Without it the handle is released when the view and everything taken
        from it are garbage collected.  Column arrays read before stay valid.
        """
        self._lease.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<ExperimentView {self.prefix} {self.status}>"


def _is_stale(record, path):
    """A ``RUNNING`` run whose writer holds the writer lock no more."""
    if record.get("status") != "RUNNING":
        return False
    writer = record.get("writer") or {}
    return not writer_alive(path, writer.get("pid"), writer.get("host"))
