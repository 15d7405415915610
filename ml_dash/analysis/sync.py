"""``sync(dest)``: runs copied into a hive-partitioned Parquet dataset, incrementally.

Each call appends, per stream, the points past what ``dest`` already holds,
as new part files (the layout and the atomic write are in :mod:`.dataset`),
and rewrites a run's ``run.parquet`` (status, times, tags, params) when it
changed.  What ``dest`` holds is read from the part names, so a killed sync
costs nothing but the temporary file it was writing, which the next call
removes, and a live run can be synced at any time: a sync takes the points
the run had committed when it opened it, and the next sync takes the rest.

Column data goes from the stores' memory maps to pyarrow without a Python
object per point: ``pa.array`` of a float64 view wraps the mapped memory.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from ..arrays import require
from ..errors import DatasetError, MLDashError
from ..names import glob_matcher
from ..paths import no_run_message, resolve_root, run_folders
from ..storage import run_summary
from ..timestamps import iso
from ..values import strict_json
from ..view import ExperimentView, load
from . import dataset

#: Points per part at most: a sync of a long stream writes several parts of this size.
PART_POINTS = 1 << 20
#: Parts with fewer points than this are merged by ``compact=True``.
SMALL_PART = 1 << 16
_THREADS = 4
_LOCK_FILE = ".sync.lock"
_FACTS_FILE = ".run.json"


@dataclass
class SyncSummary:
    """What one :func:`sync` call did."""

    runs: int = 0  #: runs it wrote something for
    points: int = 0  #: points it appended
    files: int = 0  #: files it wrote (parts, run files, merged parts)
    skipped: int = 0  #: runs that were already up to date
    failed: dict = field(default_factory=dict)  #: ``{prefix: why}`` of runs it could not sync


def sync(dest: str, pattern: str | None = None, dash_root: str | None = None, *,
         compact: bool = False) -> SyncSummary:
    """Append the runs under ``dash_root`` whose prefix matches ``pattern`` to the
    Parquet dataset at ``dest``; returns a :class:`SyncSummary`.

    ``pattern`` is the glob of :func:`list_experiments` (None: every run).
    ``compact=True`` also merges each stream's small parts (fewer than
    ``SMALL_PART`` points) into larger ones.  A run that cannot be synced (its
    store is damaged, ``dest`` holds more of it than the store, another sync is
    writing it) is left as it is and named in ``failed``; the other runs are
    synced.  A ``pattern`` that matches no run raises ``FileNotFoundError``
    naming the close prefixes.  Needs the ``arrow`` extra.
    """
    require("pyarrow", "arrow")
    if not isinstance(dest, (str, os.PathLike)):
        raise TypeError(f"sync: dest must be a folder path, got {type(dest).__name__}")
    dest = os.fspath(dest)
    root = os.path.realpath(resolve_root(dash_root))
    matches = glob_matcher(pattern) if pattern else None
    summary = SyncSummary()
    runs = sorted((prefix, directory) for prefix, directory in run_folders(root, pattern)
                  if matches is None or matches(prefix))
    if pattern and not runs:  # a typo would sync nothing, silently
        raise FileNotFoundError(no_run_message(pattern, dash_root))

    def one(run):
        prefix, directory = run
        tally = SyncSummary()
        try:
            _sync_run(dest, prefix, directory, root, compact, tally)
        except (MLDashError, FileNotFoundError) as exc:
            tally.failed[prefix] = str(exc)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise  # the disk is full, dest is not writable: every run would fail alike
            tally.failed[prefix] = (f"{prefix!r} is too long to be a folder name of the dataset "
                                    f"once encoded (about 250 bytes at most): {exc}")
        return tally

    # Threads, one run each: pyarrow's encoder, the file writes and their
    # fsyncs release the GIL, so the disk's waits overlap the encoding.
    # (Rejected: processes, which would pay pyarrow's import and a pickled
    # result per run, for runs that take milliseconds.)
    pool = ThreadPoolExecutor(_THREADS)
    try:
        for tally in pool.map(one, runs):
            summary.points += tally.points
            summary.files += tally.files
            summary.failed.update(tally.failed)
            if not tally.failed:
                summary.runs += 1 if tally.files else 0
                summary.skipped += 0 if tally.files else 1
    finally:  # Ctrl-C or a full disk: the runs not begun are not begun
        pool.shutdown(wait=True, cancel_futures=True)
    return summary


def _sync_run(dest, prefix, directory, root, compact, summary):
    with _held(dest, prefix):
        if not compact and _all_held(dest, prefix, directory):
            return
        _sync_held_run(dest, prefix, root, compact, summary)


def _all_held(dest, prefix, directory):
    """True when ``dest`` already holds every point and the run file of an ended run,
    told from the run's summary (``storage.run_summary``: the saved one while no
    commit came since), without opening its store: what makes a sync with
    nothing new cost a few file reads per run.  Anything else (a live run, a
    stream with more points, new facts, a summary that cannot be read) is left
    to the full sync, which also reports what is wrong.
    """
    try:
        saved = run_summary(directory)
    except (MLDashError, OSError):
        return False
    record = saved["record"]
    if record.get("status") in (None, "RUNNING"):
        return False
    run_folder = dataset.run_folder(dest, dataset.METRICS, prefix)
    held = 0
    for name, count in saved["streams"]:
        name = name or None  # the root stream's name in a summary is ""
        if count and _held_end(os.path.join(run_folder, dataset.stream_part(name)), name, prefix) != count:
            return False
        held += count
    times = {key: iso(record.get(key)) for key in ("createdAt", "startedAt", "endedAt")}
    text = _facts_text(dict(record, **times), saved["params"], held)
    return _facts_held(dest, prefix) == text


def _sync_held_run(dest, prefix, root, compact, summary):
    with load(prefix, dash_root=root) as view:
        run_folder = dataset.run_folder(dest, dataset.METRICS, prefix)
        refused, held = [], 0
        for name in view.metrics.names():
            stream = view.metrics(name)
            why = _unsyncable(name, stream)
            if why:
                refused.append(why)
                continue
            folder = os.path.join(run_folder, dataset.stream_part(name))
            end = _held_end(folder, name, prefix)
            count = len(stream)
            if end > count:
                raise DatasetError(
                    f"{dest!r} holds {end} points of stream {_label(name)} of {prefix!r}, the run "
                    f"only {count}: it was synced from another run of that prefix; remove "
                    f"{run_folder!r} to sync it anew")
            held += count
            for start in range(end, count, PART_POINTS):
                stop = min(start + PART_POINTS, count)
                dataset.write_atomically(folder, dataset.part_name(start, stop - 1),
                                         _encode(_part_table(stream, start, stop)))
                summary.files += 1
                summary.points += stop - start
            if compact and _compact(folder):
                summary.files += 1
        if _write_run_file(dest, prefix, view, held):
            summary.files += 1
    if refused:
        raise DatasetError(f"{prefix!r}: {'; '.join(refused)}; its other streams are synced")


#: Column names the dataset gives meaning to: a stream's key of one of these names would
#: replace the point index or hide a partition value.
RESERVED = ("index", "project", "run", "stream")


def _unsyncable(name, stream):
    """Why the stream cannot be written to the dataset, or None."""
    if name == dataset.HIVE_NULL:
        return (f"the stream {name!r} is not synced: it is the name of the hive null, which "
                "pyarrow and Dask read as the root stream")
    clashing = [key for key in stream.keys() if key in RESERVED]
    if clashing:
        return (f"the stream {_label(name)} is not synced: its key {clashing[0]!r} is a column "
                f"name of the dataset itself (the names {list(RESERVED)} are)")
    return None


def _label(name):
    return "(root)" if name is None else repr(name)


@contextmanager
def _held(dest: str, prefix: str) -> Iterator[None]:
    """The run's sync lock in ``dest``: two syncs of one run must not both append.

    A ``flock`` on a hidden file of the run's ``runs/`` folder, which NFS
    clients turn into a lock the server holds.  (Rejected: one lock for all of
    ``dest``, which would make the nodes that share a mount wait for each
    other although each syncs its own runs.)
    """
    folder = dataset.run_folder(dest, dataset.RUNS, prefix)
    os.makedirs(folder, exist_ok=True)
    descriptor = os.open(os.path.join(folder, _LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(f"another sync is writing {prefix!r} into {dest!r}") from None
        yield
    finally:
        os.close(descriptor)


def _held_end(folder, name, prefix):
    """The number of points ``folder`` holds of the stream, after clearing what a
    killed sync left: its temporary files, and parts that a merged part covers
    (a merge killed before it removed them)."""
    parts, leftovers = dataset.parts_in(folder)
    dataset.remove_leftovers(folder, leftovers)
    covered = [part for part in parts
               if any(o is not part and o[0] <= part[0] and part[1] <= o[1] for o in parts)]
    for part in covered:
        os.remove(os.path.join(folder, part[2]))
    end = 0
    for first, last, part_name in (part for part in parts if part not in covered):
        if first != end:
            raise DatasetError(
                f"{folder!r} of stream {_label(name)} of {prefix!r}: the part {part_name!r} starts "
                f"at point {first}, the parts before it end at {end}; a file was added or "
                "removed by hand")
        end = last + 1
    return end


def _part_table(stream, start, stop):
    """The points ``[start, stop)`` of ``stream`` as a table: ``index``, ``_ts`` and its
    numeric columns, each wrapping the memory map (no copy)."""
    pa = require("pyarrow", "arrow")
    columns = stream.columns(start=start, stop=stop)
    arrays = {"index": np.arange(start, stop, dtype=np.int64), "_ts": columns.pop("_ts")}
    arrays.update(columns)
    return pa.table({key: pa.array(values) for key, values in arrays.items()})


def _encode(table):
    """Parquet bytes of ``table``.

    Uncompressed, without dictionaries, ``index`` delta-encoded: float
    metrics seldom repeat and hardly compress, and snappy took four times as
    long as the rest of the encoding (13.8 ms against 3.3 ms for 100,000
    points of four columns) to make the file 17% smaller than this.
    (Rejected: zstd, slower still; dictionaries, tried on every page.)
    """
    pa = require("pyarrow", "arrow")
    pq = require("pyarrow.parquet", "arrow")
    sink = pa.BufferOutputStream()
    encodings = {"index": "DELTA_BINARY_PACKED"} if "index" in table.column_names else None
    pq.write_table(table, sink, compression="none", use_dictionary=False, column_encoding=encodings)
    return sink.getvalue()


def _write_run_file(dest, prefix, view: ExperimentView, points: int):
    """Write the run's ``run.parquet`` unless it was made from the same facts; True if written.
    ``points``: how many the dataset holds of the run.

    The facts (status, times, tags, params, points) as JSON text are kept
    beside it in a hidden file, written after it: comparing them costs a
    read of a few hundred bytes, where building the Parquet file to compare
    its bytes cost more than the rest of a sync with nothing new.  A kill
    between the two writes leaves old facts, so the next sync writes the
    run file again, which is harmless.
    """
    pa = require("pyarrow", "arrow")
    text = _facts_text(view.info, view.params.get(flatten=True), points)
    if _facts_held(dest, prefix) == text:
        return False
    facts = json.loads(text)
    folder = dataset.run_folder(dest, dataset.RUNS, prefix)
    stamp = pa.timestamp("us", tz="UTC")
    columns = {key: pa.array([_micros(facts[key])], stamp)
               for key in ("createdAt", "startedAt", "endedAt")}
    table = pa.table({
        "status": pa.array([facts["status"]], pa.string()),
        **columns,
        "description": pa.array([facts["description"]], pa.string()),
        "tags": pa.array([facts["tags"]], pa.list_(pa.string())),
        "launches": pa.array([facts["launches"]], pa.int64()),
        "points": pa.array([facts["points"]], pa.int64()),
        "params": pa.array([facts["params"]], pa.string()),
    })
    dataset.write_atomically(folder, dataset.RUN_FILE, _encode(table))
    dataset.write_atomically(folder, _FACTS_FILE, text, durable=False)
    return True


def _facts_text(record, params, points):
    """The facts of the run file as JSON bytes, from ``record`` with ISO times and the
    flat ``params``: the same bytes from a view and from a saved summary."""
    return strict_json({
        "status": record.get("status"), "createdAt": record.get("createdAt"),
        "startedAt": record.get("startedAt"), "endedAt": record.get("endedAt"),
        "description": record.get("description"), "tags": list(record.get("tags") or []),
        "launches": int(record.get("launchCount") or 0),
        "points": points,
        "params": strict_json(params),
    }).encode()


def _facts_held(dest, prefix):
    """The facts ``dest`` holds of the run (bytes), or None."""
    try:
        with open(os.path.join(dataset.run_folder(dest, dataset.RUNS, prefix), _FACTS_FILE), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _micros(text):
    """Microseconds since the epoch of an ISO time of ``view.info``, None for None."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _compact(folder):
    """Merge each run of consecutive small parts in ``folder`` into one part; True if
    it merged any.  The merged part is in place before the small ones go, so a
    reader may see both for a moment, and a kill between leaves parts that
    :func:`_held_end` removes at the next sync."""
    pa = require("pyarrow", "arrow")
    pq = require("pyarrow.parquet", "arrow")
    groups: list[list] = []
    current: list = []
    for part in dataset.parts_in(folder)[0]:
        size = part[1] - part[0] + 1
        if size >= SMALL_PART or sum(p[1] - p[0] + 1 for p in current) + size > PART_POINTS:
            groups.append(current)
            current = []
        if size < SMALL_PART:
            current.append(part)
    groups.append(current)
    merged = False
    for group in (g for g in groups if len(g) > 1):
        tables = [pq.read_table(os.path.join(folder, part[2])) for part in group]
        table = pa.concat_tables(tables, promote_options="default")
        dataset.write_atomically(folder, dataset.part_name(group[0][0], group[-1][1]), _encode(table))
        dataset.fsync_folder(folder)
        for part in group:
            os.remove(os.path.join(folder, part[2]))
        merged = True
    return merged
