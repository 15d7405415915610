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

Before reading anything itself, it has another process walk every page of
the LMDB file (``walk.py``): damage to LMDB's own page structure can make
LMDB's C code abort, which must end in a report, not in a dead caller.
"""

import math
import os
import signal
import subprocess
import sys

import lmdb
import numpy as np

from ..errors import MLDashError, StorageError
from ..names import stream_label
from . import keys, walk
from .catalog import TS_KEY, Catalog
from .codec import PointDecoder, stored_format
from .columns import DTYPE, ColumnFile, ColumnMap, column_path
from .env import DAMAGE_ERRORS
from .envfiles import DATA_FILE
from .layout import check_run_folder
from .lock import WriterLock, writer_alive
from .owner import refuse_if_writer_lives
from .reader import experiment_record
from .records_check import check_records
from .registry import acquire, release
from .slots import capacity_for as _capacity_for
from .slots import numeric_leaves as _numeric_leaves

CHUNK = 65536
WALK_SECONDS = 60  # plus one per 10 MB of file: a walk that takes longer is reported, not waited for


class CheckReport:
    """What :func:`check` found.

    ``ok`` is True when nothing is wrong any more (after ``repair=True``,
    when every problem found was repaired).  ``problems`` lists what is
    still wrong, ``repaired`` what was fixed; ``streams`` maps each stream
    name (None for the root) to its committed points, ``tracks`` each
    track's topic to its entries; ``points`` (entries included) and
    ``columns`` count what was verified.
    """

    def __init__(self, prefix, path):
        self.prefix = prefix
        self.path = path
        self.streams = {}
        self.tracks = {}
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
    lock = WriterLock(path, action="repair it") if repair else None  # repairs write: no live writer allowed
    report = CheckReport(prefix, path)
    try:
        check_run_folder(path)  # every column is read, and a repair writes them
        try:
            env = acquire(path)
        except MLDashError as exc:  # a truncated or unreadable file: nothing more can be read
            report.problems.append(str(exc))
            return report
        try:
            if lock is not None:
                refuse_if_writer_lives(env, lock, path)
            damage = _walk_in_a_child(path, env)
            if damage:
                report.problems.append(damage)
            else:
                _Checker(env, path, report, repair).run()
            return report
        finally:
            release(env)
    finally:
        if lock is not None:
            lock.release()


def _walk_in_a_child(path, env):
    """Why reading the whole LMDB file fails, found in another process; None if it does not."""
    size = os.path.getsize(os.path.join(path, DATA_FILE))
    command = [sys.executable, walk.__file__, path, str(env.lmdb.info()["map_size"])]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=WALK_SECONDS + size / 10e6, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"{path}/{DATA_FILE}: reading every page took over {WALK_SECONDS + size / 10e6:.0f} s"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return (f"{path}/{DATA_FILE} is damaged: reading its pages killed the reading process "
                f"with {name} (LMDB's own page structure is broken; the rows cannot be read)")
    if done.returncode == walk.DAMAGED:
        return f"{path}/{DATA_FILE} is damaged: {done.stdout.strip()[-500:]}"
    raise StorageError(f"cannot check {path}: the process reading its pages failed "
                       f"({done.returncode}): {done.stderr.strip()[-500:]}")


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
        except (MLDashError, lmdb.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.problem(f"the catalog cannot be read: {exc}")
            return
        for entry in catalog.by_id.values():
            count = counts.get(entry.sid, 0)
            if entry.is_track:
                self.report.tracks[entry.name.topic] = count
            else:
                self.report.streams[entry.name or None] = count
            try:
                self._check_stream(entry, count)
            except (MLDashError, *DAMAGE_ERRORS) as exc:
                self.problem(f"{_label(entry)}: {exc}")
        # A file saved while a writer is live may have its contents before its record.
        saving = writer_alive(self.path) and not self.repair
        try:
            check_records(self.env, self.path, self.report, self.repair, saving=saving)
        except (MLDashError, *DAMAGE_ERRORS) as exc:
            self.problem(f"the params, logs and file records cannot be read: {exc}")

    def _meta_and_counts(self, txn, catalog):
        meta = self.env.db(keys.META_DB, txn)
        if meta is None:
            self.problem("the store has no meta sub-database")
            return {}
        self.points = PointDecoder()
        try:
            self.points = PointDecoder(stored_format(txn.get(keys.FORMAT_KEY, db=meta), self.path))
        except MLDashError as exc:
            self.problem(str(exc))
        try:
            experiment_record(txn.get(keys.EXPERIMENT_KEY, db=meta), self.path)
        except MLDashError as exc:
            self.problem(str(exc))
        catalog.refresh(txn, self.env)
        counts = {}
        for entry in catalog.by_id.values():
            db = self.env.db(entry.db_name, txn)
            cursor = None if db is None else txn.cursor(db=db)
            if cursor is not None and cursor.last():
                try:
                    counts[entry.sid] = keys.count_after(cursor.key())
                except MLDashError:  # a damaged last key: check the rows there are
                    counts[entry.sid] = txn.stat(db)["entries"]
        return counts

    def _check_stream(self, entry, count):
        label = _label(entry)
        columns = dict(entry.columns)
        self.report.columns += len(columns)
        maps = {key: ColumnMap(column_path(self.path, entry.sid, cid)) for key, cid in columns.items()}
        broken: set = set()
        for start in range(0, count, CHUNK):
            stop = min(count, start + CHUNK)
            expected = {key: np.full(stop - start, math.nan, dtype=DTYPE) for key in columns}
            good_rows = self.env.read(
                lambda txn, start=start, stop=stop, expected=expected:
                self._rows(txn, entry, label, start, stop, expected))
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
            if key != keys.pack_index(index):
                self.problem(f"{label}: point indices jump from {index - 1} to {key!r}")
                return index - start
            try:
                _, ts, data = self.points.decode(value)
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
            except MLDashError as exc:
                self.problem(f"{label}: point {index} is damaged: {exc}")
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
            if (entry.is_track and not self.repair and len(wrong) == 1
                    and start + wrong[0] == count - 1):
                # A track's last entry, amended by a commit in flight or cut off by
                # a kill: every open rebuilds its slots from its row (see entries.py).
                return
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
            assert writable.values is not None  # open until closed below
            np.frombuffer(writable.values, dtype=DTYPE)[start:stop] = want
            writable.sync()
        finally:
            writable.close()
        if key not in broken:
            broken.add(key)
            self.report.repaired.append(text)


def _label(entry):
    return stream_label(entry.name)
