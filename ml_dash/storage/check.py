"""The integrity checker and compaction of one experiment's store.

:func:`check` reads everything the store holds and verifies it: the format
version, the catalog, that every stream's point indices run 0, 1, 2, ...
without a gap, that every point decodes, and that every column slot equals
the value its row implies (the same rule the writer follows: NaN where the
point lacks the key, +-inf for ints beyond float64).  Rows are the truth and
columns are derived, so ``repair=True`` rewrites wrong or missing column
slots from the rows; a damaged row cannot be repaired and is reported.

It reads in short transactions of :data:`CHUNK` points, so it neither blocks
a live writer nor pins its pages for long; points committed after it started
are left for the next check.

:func:`compact` rewrites the LMDB file without its free pages (after a
stalled or killed reader made it grow, or after a very large run was
shortened), through ``copy(compact=True)`` into a temporary file and an
atomic rename.
"""

import json
import math
import os
import shutil

import lmdb
import msgpack
import numpy as np

from ..errors import ExperimentError, StorageError
from . import keys
from .catalog import TS_KEY, Catalog
from .codec import FORMAT_VERSION, decode_point
from .columns import DTYPE, ColumnFile, ColumnMap, column_path
from .env import DATA_FILE, acquire, release
from .lock import WriterLock
from .owner import refuse_if_writer_lives
from .records_check import check_records
from .writer import _capacity_for, _numeric_leaves

CHUNK = 65536
LOCK_DATA_FILE = "lock.mdb"


class CheckReport:
    """What :func:`check` found.

    ``ok`` is True when nothing is wrong any more (after ``repair=True``,
    when every problem found was repaired).  ``problems`` lists what is
    still wrong, ``repaired`` what was fixed; ``streams`` maps each stream
    name (None for the root) to its committed points; ``points`` and
    ``columns`` count what was verified.
    """

    def __init__(self, prefix, path):
        self.prefix = prefix
        self.path = path
        self.streams = {}
        self.points = 0
        self.columns = 0
        self.problems = []
        self.repaired = []

    @property
    def ok(self):
        return not self.problems

    def __bool__(self):
        return self.ok

    def __repr__(self):
        state = "ok" if self.ok else f"{len(self.problems)} problems"
        return (f"<CheckReport {self.prefix}: {state}, {self.points} points, {self.columns} columns, "
                f"{len(self.repaired)} repaired>")


def check_store(prefix, path, repair=False):
    """Verify the store at ``path``; see :func:`ml_dash.check`."""
    if not os.path.exists(os.path.join(path, DATA_FILE)):
        raise FileNotFoundError(f"no experiment {prefix!r} at {path}")
    lock = WriterLock(path) if repair else None  # repairs write: no live writer allowed
    try:
        env = acquire(path)
        try:
            if lock is not None:
                refuse_if_writer_lives(env, lock, path)
            report = CheckReport(prefix, path)
            _Checker(env, path, report, repair).run()
            return report
        finally:
            release(env)
    finally:
        if lock is not None:
            lock.release()


class _Checker:
    def __init__(self, env, path, report, repair):
        self.env = env
        self.path = path
        self.report = report
        self.repair = repair

    def problem(self, text):
        self.report.problems.append(text)

    def run(self):
        catalog = Catalog()
        try:
            counts = self.env.read(lambda txn: self._meta_and_counts(txn, catalog))
        except (lmdb.Error, ValueError, KeyError, UnicodeDecodeError) as exc:
            self.problem(f"the catalog cannot be read: {exc}")
            return
        for entry in catalog.by_id.values():
            count = counts.get(entry.sid, 0)
            self.report.streams[entry.name or None] = count
            self._check_stream(entry, count)
        check_records(self.env, self.path, self.report, self.repair)

    def _meta_and_counts(self, txn, catalog):
        meta = self.env.db(keys.META_DB, txn)
        if meta is None:
            self.problem("the store has no meta sub-database")
            return {}
        version = txn.get(keys.FORMAT_KEY, db=meta)
        if version is None or version != str(FORMAT_VERSION).encode():
            self.problem(f"format version is {version!r}, expected {FORMAT_VERSION}")
        record = txn.get(keys.EXPERIMENT_KEY, db=meta)
        if record is not None:
            try:
                json.loads(record)
            except ValueError as exc:
                self.problem(f"the experiment record is not valid JSON: {exc}")
        catalog.refresh(txn, self.env)
        counts = {}
        for entry in catalog.by_id.values():
            db = self.env.db(entry.db_name, txn)
            cursor = None if db is None else txn.cursor(db=db)
            if cursor is not None and cursor.last():
                counts[entry.sid] = keys.unpack_index(cursor.key()) + 1 if len(cursor.key()) == 8 else 0
        return counts

    def _check_stream(self, entry, count):
        label = f"stream {entry.name!r}" if entry.name else "the root stream"
        columns = dict(entry.columns)
        self.report.columns += len(columns)
        maps = {key: ColumnMap(column_path(self.path, entry.sid, cid)) for key, cid in columns.items()}
        broken = set()
        for start in range(0, count, CHUNK):
            stop = min(count, start + CHUNK)
            expected = {key: np.full(stop - start, math.nan, dtype=DTYPE) for key in columns}
            good_rows = self.env.read(lambda txn: self._rows(txn, entry, label, start, stop, expected))
            self.report.points += good_rows
            if good_rows != stop - start:
                return  # rows are damaged: columns cannot be judged against them
            for key, want in expected.items():
                self._check_column(entry, label, key, maps[key], start, stop, count, want, broken)

    def _rows(self, txn, entry, label, start, stop, expected):
        """Decode rows [start, stop) into ``expected``; returns how many were good."""
        db = self.env.db(entry.db_name, txn)
        cursor = txn.cursor(db=db)
        if not cursor.set_key(keys.pack_index(start)):
            self.problem(f"{label}: point {start} is missing")
            return 0
        index = start
        for key, value in cursor:
            if index >= stop:
                break
            if len(key) != 8 or keys.unpack_index(key) != index:
                self.problem(f"{label}: point indices jump from {index - 1} to {key!r}")
                return index - start
            try:
                _, ts, data = decode_point(value)
                slot = index - start
                if TS_KEY in expected:
                    expected[TS_KEY][slot] = ts
                for name, number in _numeric_leaves(data):
                    column = expected.get(name)
                    if column is None:
                        self.problem(f"{label}: key {name!r} of point {index} has no column")
                        continue
                    try:
                        column[slot] = number
                    except OverflowError:
                        column[slot] = math.inf if number > 0 else -math.inf
            except (ValueError, TypeError, AttributeError, msgpack.UnpackException) as exc:
                self.problem(f"{label}: point {index} cannot be decoded: {exc}")
                return index - start
            index += 1
        if index < stop:
            self.problem(f"{label}: points {index} to {stop - 1} are missing")
        return index - start

    def _check_column(self, entry, label, key, column, start, stop, count, want, broken):
        try:
            have = column.view(count)[start:stop]
        except StorageError as exc:
            have = None
            reason = str(exc)
        else:
            if np.array_equal(have, want, equal_nan=True):
                return
            wrong = np.flatnonzero(~((have == want) | (np.isnan(have) & np.isnan(want))))
            reason = f"{len(wrong)} slots differ from the rows, first at point {start + wrong[0]}"
        text = f"{label}: column {key!r} ({column.path}): {reason}"
        if not self.repair:
            if key not in broken:
                broken.add(key)
                self.problem(text)
            return
        fresh = not os.path.exists(column.path)
        writable = ColumnFile(column.path, _capacity_for(count), fresh=fresh)
        try:
            np.frombuffer(writable.values, dtype=DTYPE)[start:stop] = want
            writable.sync()
        finally:
            writable.close()
        if key not in broken:
            broken.add(key)
            self.report.repaired.append(text)


def compact_store(prefix, path):
    """Rewrite the store at ``path`` without free pages; returns ``(bytes before, after)``.

    Needs the writer lock (no live writer) and no reader in any process: a
    reader would keep the old file open and see nothing written afterwards.
    """
    data = os.path.join(path, DATA_FILE)
    if not os.path.exists(data):
        raise FileNotFoundError(f"no experiment {prefix!r} at {path}")
    lock = WriterLock(path)
    try:
        env = acquire(path)
        try:
            refuse_if_writer_lives(env, lock, path)
            if env.refs > 1:
                raise ExperimentError(
                    f"cannot compact {prefix!r}: this process has it open; close its views first")
            handle = env.lmdb
            handle.reader_check()
            others = sorted({line.split()[0] for line in handle.readers().splitlines()[1:]
                             if line.split() and line.split()[0] != str(os.getpid())})
            if others:
                raise ExperimentError(
                    f"cannot compact {prefix!r}: processes {', '.join(others)} are reading it")
            temporary = os.path.join(path, ".compacting")
            shutil.rmtree(temporary, ignore_errors=True)
            os.makedirs(temporary)
            try:
                handle.copy(temporary, compact=True)
            except lmdb.Error as exc:
                shutil.rmtree(temporary, ignore_errors=True)
                raise StorageError(f"cannot compact the store at {path}: {exc}") from exc
        finally:
            release(env)
        before = os.path.getsize(data)
        copied = os.path.join(temporary, DATA_FILE)
        with open(copied, "rb") as f:
            os.fsync(f.fileno())
        os.replace(copied, data)
        # The lock file describes the old file's transactions; LMDB rebuilds it.
        try:
            os.remove(os.path.join(path, LOCK_DATA_FILE))
        except FileNotFoundError:
            pass
        shutil.rmtree(temporary, ignore_errors=True)
        directory = os.open(path, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return before, os.path.getsize(data)
    finally:
        lock.release()
