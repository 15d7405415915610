"""Internal storage engine: LMDB rows plus memory-mapped float64 columns.

Not a public API.  This module is the only door into the engine: the rest
of ml_dash imports the names of ``__all__`` from here and nothing from the
submodules (a test in ``tests/test_layers.py`` checks it), and only this
package imports ``lmdb`` and ``msgpack``.

- :class:`Store`: a run's store opened for reading (a view, or a run read
  after it ended) or for writing (a live run: its :class:`Writer`, the one
  write path, and a reader of its committed data).  A context manager; a
  read store that is forgotten is released when it is garbage collected.
- :mod:`records`: the params, log and file records, built and read back.
- :mod:`blobs`: the contents of attached files.
- :func:`check_store`, :func:`compact_store`,
  :func:`run_summary` (the listing's summary of a run, saved by a writer
  at close), :func:`writer_alive`, :func:`held_flocks`.
- :func:`writers_held_off` (a run held for a move or removal) and
  :func:`fsync_directory`.
"""

from __future__ import annotations

import contextlib

from ..errors import ExperimentError, MLDashError
from . import blobs, records, summary
from .check import CheckReport, check_store
from .compact import compact_store
from .envfiles import DATA_FILE
from .layout import fsync_directory
from .lock import WriterLock, held_flocks, writer_alive
from .owner import refuse_if_writer_lives
from .reader import StoreReader
from .registry import Lease, acquire, opens_held_back, release
from .writer import MAX_STREAMS, StreamSpec, Writer


class Store:
    """One opened store of a run: ``reader`` always, ``writer`` when opened to write."""

    def __init__(self, env, reader: StoreReader, writer: Writer | None = None) -> None:
        self._env = env
        self.reader = reader
        self.writer = writer
        self.path = reader.directory
        # A read store's reference is dropped by close() or, forgotten, by the collector.
        self._lease = Lease(env, self) if writer is None else None

    @classmethod
    def open(cls, path: str, write: bool = False, sync_interval: float = 1.0,
             lock_timeout: float | None = 0.0, on_open=None) -> Store:
        """Open the store at ``path``.

        Reading: ``FileNotFoundError`` when there is none.  Writing creates it
        if needed and takes the single-writer lock (``WriterLockedError``);
        ``on_open(stored experiment record)`` returns records that the
        opening transaction stores (all or, raising, none with the store).
        """
        env = acquire(path, writable=write)
        try:
            writer = Writer(env, path, sync_interval=sync_interval, lock_timeout=lock_timeout,
                            on_open=on_open) if write else None
            try:
                reader = StoreReader(env, path)
            except BaseException:
                if writer is not None:
                    writer.close()
                raise
        except BaseException:
            release(env, writable=write)
            raise
        return cls(env, reader, writer)

    def close(self) -> None:
        """Release the store (a writer first syncs and releases its lock); once."""
        if self.writer is None:
            assert self._lease is not None  # a reader's store always has one
            self._lease.release()
        elif self._env is not None:
            self.writer.close()
            self._save_summary()
            release(self._env, writable=True)
            self._env = None

    def _save_summary(self) -> None:
        """The listing's summary of a run that ended (see :mod:`.summary`), saved as the
        writer closes: after its last commit, so it names the final snapshot."""
        try:
            summary.save(self.path, summary.gather(self.reader))
        except (MLDashError, OSError):
            pass  # a shortcut only: the listing reads the store instead

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_summary(path: str) -> dict:
    """What a listing shows of the run at ``path``: ``record``, ``streams``
    (``[[name, count]]``), ``tracks`` (``{topic: count}``), ``params`` (flat) and
    ``last`` (``[[stream, {key: last value}]]``).

    From the run's saved summary when it is still true (no commit since it
    was saved), else from the store in one read transaction.
    """
    saved = summary.fresh(path)
    if saved is not None:
        return saved
    with Store.open(path) as store:
        return summary.gather(store.reader)


def committed_columns(path: str, wanted) -> list:
    """``[(stream name, {key: read-only array of its committed points})]`` of the run
    at ``path``: ``_ts`` and the keys ``wanted(key)`` accepts, of every stream with points.

    A run that has ended is mapped from the column files its fresh summary
    names, without opening LMDB; any other from its store, in one read per
    stream.  The arrays are views of the maps and stay valid on their own.
    """
    saved = summary.fresh(path)
    if saved is not None:
        mapped = summary.mapped_columns(path, saved, wanted)
        if mapped is not None:
            return mapped
    out = []
    with Store.open(path) as store:
        reader = store.reader
        for name in reader.stream_names():
            keys = [key for key in reader.column_keys(name) if key == "_ts" or wanted(key)]
            columns, _ = reader.columns(name, keys, 0, None)
            if len(columns.get("_ts", ())):
                out.append((name, columns))
    return out


@contextlib.contextmanager
def writers_held_off(path: str, action: str):
    """Hold the run at ``path`` for the block: no writer is live, none can start,
    and this process has it open nowhere; ``action`` (``"move it"``) ends the
    ``WriterLockedError`` that refuses a live run.

    For moving or removing a run folder: the writer lock is held across the
    rename, so a writer starting meanwhile is refused (or waits) instead of
    writing into a folder that is going away.
    """
    lock = WriterLock(path, action=action)
    try:
        try:
            env = acquire(path)
        except MLDashError:
            # Damaged beyond opening: no record to ask, and a writer could not
            # open it either.  The flock alone keeps writers out: a damaged run
            # must stay removable.
            env = None
        if env is not None:
            try:  # a writer whose writer.lock was deleted under it still owns the store
                refuse_if_writer_lives(env, lock, path)
            finally:
                release(env)
        with opens_held_back(path) as open_here:
            if open_here:
                raise ExperimentError(f"{path} is open in this process: close its views, then "
                                      f"{action}")
            yield
    finally:
        lock.release()


__all__ = ["Store", "Writer", "StreamSpec", "StoreReader", "records", "blobs", "MAX_STREAMS", "DATA_FILE",
           "check_store", "compact_store", "CheckReport", "writer_alive",
           "held_flocks", "writers_held_off", "fsync_directory", "run_summary", "committed_columns"]
