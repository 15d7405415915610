"""Kill loop: SIGKILL a writer again and again, and check the store against an oracle.

    python tests/crash_loop.py --kills 50          # what tests/test_crash.py runs
    python tests/crash_loop.py --long              # 1,000 kills
    python tests/crash_loop.py --kills 200 --seed 3 --dir /tmp/crash --full-every 10

The writer logs values that are a deterministic function of (stream, index),
so after every kill the whole store can be compared with what it must hold:

- streams ``a`` and the root get the same number of points in every flush,
  stream ``b`` too once ``a`` passed :data:`B_STARTS` (so a kill that split a
  snapshot shows as unequal counts); points carry sparse, string and nested
  fields, so columns appear mid-run;
- each writer opens with a tiny map (it grows several times per writer) and
  continues the indices where the store ends;
- it is killed either by the parent at a random moment (during start-up,
  column rebuild, logging or commit) or by itself at a named fault point
  (``ML_DASH_FAULT``, see ``ml_dash/storage/faults.py``) on a random pass.

Track ``t`` gets one entry per point of ``a`` in the same snapshots, each
merged from two appends when its index is a multiple of 3 (the second with
``_ts=-1``), and every entry gets a ``late`` field one append after it:
staged with the next entry, or, for the last entry of a snapshot, by the next
snapshot (an amend of the committed entry, in place).  So every entry but the
last has ``late``, and the last has it or not, its columns agreeing with its
row either way.

After each kill: every stream is a contiguous prefix equal to the oracle (the
rows new since the last kill are read; all rows are re-read every
``--full-every`` kills with ``ml_dash.check``), every column equals the
oracle for the whole count, counts never go down, and the next writer starts
with no manual unlock.  Exit status 0 only if every check passed.
"""

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

PREFIX = "crash/run"
B_STARTS = 200
NAMED = ["before_columns", "before_commit", "after_commit", "map_growth", "column_growth", "sync"]


# -- the oracle ------------------------------------------------------------------------

def flush_size(index):
    """Points per stream in the flush that starts at ``index`` of stream ``a``."""
    return 1 + (index * 7919) % 3


def point(stream, index):
    """The fields of point ``index`` of ``stream`` (without ``_ts``)."""
    salt = {"a": 1, "b": 2, None: 3}[stream]
    fields = {"i": index, "v": math.sin(index * salt) * 1000 + salt}
    if index % 50 == 7:
        fields["sparse"] = index * 0.5
    if index % 33 == 0:
        fields["name"] = f"{stream}-{index}"
    if index % 77 == 5 and stream is not None:  # the root routes dicts to streams
        fields["n"] = {"x": index, "deep": {"y": -index}}
    if index % 101 == 3:
        fields["big"] = 2 ** 70 + index
    return fields


def ts_of(stream, index):
    return 1.7e9 + index + {"a": 0.25, "b": 0.5, None: 0.75}[stream]


def track_ts(index):
    return 1.7e9 + index + 0.125


def track_entry(index):
    """Entry ``index`` of track ``t`` once its ``late`` append has come."""
    entry = {"j": index, "w": index * 0.5, "late": -index}
    if index % 3 == 0:
        entry["m"] = index * 2
    return entry


def log_snapshot(exp, index):
    """Stage the points and entries of the flush that starts at ``index``, and flush."""
    a, b, root, track = exp.metrics("a"), exp.metrics("b"), exp.metrics, exp.tracks("t")
    offset = b_offset()
    if index:
        track.append(late=-(index - 1), _ts=track_ts(index - 1))  # amends the committed entry
    for k in range(flush_size(index)):
        j = index + k
        a.log(_ts=ts_of("a", j), **point("a", j))
        root.log(_ts=ts_of(None, j), **point(None, j))
        if index >= offset:
            b.log(_ts=ts_of("b", j - offset), **point("b", j - offset))
        track.append(j=j, w=j * 0.5, _ts=track_ts(j))
        if j % 3 == 0:
            track.append(m=j * 2, _ts=-1)  # the _ts of the append just before: merged
        if k:
            track.append(late=-(j - 1), _ts=track_ts(j - 1))  # merged into a staged entry
    root.flush()
    return index + flush_size(index)


def b_offset():
    """Index of ``a`` at which ``b`` starts: the first flush starting at or past B_STARTS."""
    index = 0
    while index < B_STARTS:
        index += flush_size(index)
    return index


def expected_columns(stream, count):
    i = np.arange(count, dtype=np.float64)
    salt = {"a": 1, "b": 2, None: 3}[stream]
    nan = np.full(count, np.nan)
    columns = {
        "_ts": 1.7e9 + i + {"a": 0.25, "b": 0.5, None: 0.75}[stream],
        "i": i,
        "v": np.sin(i * salt) * 1000 + salt,
        "sparse": np.where(i % 50 == 7, i * 0.5, nan),
        "n.x": np.where(i % 77 == 5, i, nan),
        "n.deep.y": np.where(i % 77 == 5, -i, nan),
        "big": np.where(i % 101 == 3, float(2 ** 70) + i, nan),
    }
    # a column exists from the first point that has the key: before it, NaN
    return columns


# -- the writer (a child process) ----------------------------------------------------------

def writer_main(dash_root):
    import ml_dash.storage.env as env
    env.INITIAL_MAP_SIZE = 64 << 10  # grows within a few flushes of every writer
    import ml_dash
    exp = ml_dash.Experiment(prefix=PREFIX, dash_root=dash_root,
                             sync_interval=float(os.environ.get("CRASH_SYNC", "0.05")))
    exp.run.start()
    index = len(exp.metrics("a"))
    print("started", flush=True)
    while True:
        index = log_snapshot(exp, index)


# -- the checks (in the parent) ---------------------------------------------------------------

class Damage(AssertionError):
    pass


def verify(dash_root, previous, full, settled=False):
    """Check the store; returns the new counts.  Raises :class:`Damage`."""
    import ml_dash
    view = ml_dash.load(PREFIX, dash_root=dash_root)
    try:
        present = set(view.metrics.names())  # b may not exist yet, and reading it then raises
        counts = {name: len(view.metrics(name)) if name in present or name is None else 0
                  for name in ("a", "b", None)}
        offset = b_offset()
        if counts["a"] != counts[None]:
            raise Damage(f"a snapshot was split: counts {counts}")
        if counts["b"] != max(0, counts["a"] - offset):
            raise Damage(f"stream b does not match a: counts {counts}, b starts at a={offset}")
        counts[TRACK] = verify_track(view.tracks("t"), counts["a"], previous, full, settled)
        for name, count in counts.items():
            if name == TRACK:
                continue
            if count < previous.get(name, 0):
                raise Damage(f"stream {name!r} lost points: {previous[name]} -> {count}")
            stream = view.metrics(name)
            start = 0 if full else max(0, previous.get(name, 0) - 3)
            while start < count:
                page = stream.read(start_index=start, limit=5000)["data"]
                if not page:
                    raise Damage(f"stream {name!r}: no rows from {start} though count is {count}")
                for row in page:
                    index = row["index"]
                    want = dict(point(name, index), _ts=ts_of(name, index))
                    if index != start or row["data"] != want:
                        raise Damage(f"stream {name!r} row {index} (expected {start}): "
                                     f"{row['data']} != {want}")
                    start += 1
            if count:
                have = stream.columns()
                for key, want in expected_columns(name, count).items():
                    if key not in have:
                        continue  # not created yet: no point had the key
                    first = _first_with_key(name, key, count)
                    if first is None:
                        raise Damage(f"stream {name!r} has column {key!r} that no point needs")
                    want = want.copy()
                    want[:first] = np.nan
                    if not np.array_equal(have[key], want, equal_nan=True):
                        bad = np.flatnonzero(~np.isclose(have[key], want, rtol=0, atol=0, equal_nan=True))
                        raise Damage(f"stream {name!r} column {key!r} differs at {bad[:5]}")
                missing = [key for key in ("_ts", "i", "v") if key not in have]
                if missing:
                    raise Damage(f"stream {name!r} lacks columns {missing}")
        if full:
            report = ml_dash.check(PREFIX, dash_root=dash_root)
            if not report.ok:
                raise Damage(f"check() found: {report.problems}")
        return counts
    finally:
        view.close()


TRACK = "track t"  # its key among the counts


def verify_track(track, count_of_a, previous, full, settled):
    """Check track ``t`` against the oracle; returns its count."""
    count = len(track)
    if count != count_of_a:
        raise Damage(f"a snapshot was split: track t has {count} entries, stream a {count_of_a}")
    if count < previous.get(TRACK, 0):
        raise Damage(f"track t lost entries: {previous[TRACK]} -> {count}")
    start = 0 if full else max(0, previous.get(TRACK, 0) - 3)
    while start < count:
        page = track.read_page(start_index=start, limit=5000)["data"]
        for row in page:
            index = row["index"]
            want = dict(track_entry(index), _ts=track_ts(index))
            if index == count - 1 and "late" not in row["data"]:
                del want["late"]  # its amend may be in a snapshot the kill cut off
            if index != start or row["data"] != want:
                raise Damage(f"track t entry {index} (expected {start}): {row['data']} != {want}")
            start += 1
    if count:
        i = np.arange(count, dtype=np.float64)
        expected = {"_ts": 1.7e9 + i + 0.125, "j": i, "w": i * 0.5, "late": -i,
                    "m": np.where(i % 3 == 0, i * 2, np.nan)}
        amended = "late" in track.read_page(count - 1, 1)["data"][0]["data"]
        for key, want in expected.items():
            if key not in track.keys():
                if count > 1 or key != "late":
                    raise Damage(f"track t lacks column {key!r}")
                continue
            have = track.column(key)
            # The last entry's slots: those of its row, or, until the next writer opens
            # the store, those of an amend that a kill cut off before its commit.
            last_ok = (have[-1] == want[-1] or (key == "late" and np.isnan(have[-1]) and not amended)
                       or (key == "late" and not settled and not amended))
            if not np.array_equal(have[:-1], want[:-1], equal_nan=True) or not last_ok:
                bad = np.flatnonzero(~np.isclose(have, want, rtol=0, atol=0, equal_nan=True))
                raise Damage(f"track t column {key!r} differs from the rows at {bad[:5]}")
    return count


def _first_with_key(stream, key, count):
    """The first index whose point has ``key`` (nested keys as ``a.b``)."""
    if key in ("_ts", "i", "v"):
        return 0
    for index in range(count):
        fields = point(stream, index)
        node = fields
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return index
    return None


# -- the loop ------------------------------------------------------------------------------

def run(kills, seed=0, dash_root=None, full_every=25, named_share=0.4, points=NAMED,
        rotate=200_000, log=print):
    """Kill ``kills`` writers; returns a summary dict.  Raises :class:`Damage`.

    ``named_share`` of the writers kill themselves at one of ``points``.  Once
    a run holds ``rotate`` points it is finished and checked, and the loop
    goes on with a new run (which also exercises a fresh store again).
    """
    rng = random.Random(seed)
    own = dash_root is None
    top = dash_root or tempfile.mkdtemp(prefix="ml_dash_crash_")
    runs = 1
    dash_root = os.path.join(top, "run-1")
    counts, named_fired, named_tried = {}, {}, {}
    points_checked = 0
    started = time.monotonic()
    try:
        for kill in range(1, kills + 1):
            if counts.get("a", 0) > rotate:
                points_checked += sum(finish(dash_root, counts).values())
                runs += 1
                dash_root = os.path.join(top, f"run-{runs}")
                counts = {}
            environ = dict(os.environ, CRASH_SYNC=rng.choice(["0", "0.02", "1"]))
            environ.pop("ML_DASH_FAULT", None)
            named = None
            if rng.random() < named_share:
                named = rng.choice(points)
                nth = rng.randint(1, 3) if named in ("map_growth", "column_growth", "sync") \
                    else rng.randint(1, 300)
                environ["ML_DASH_FAULT"] = f"{named}:kill:{nth}"
                if named == "sync":  # reach the sync point within the wait
                    environ["CRASH_SYNC"] = rng.choice(["0", "0.02"])
                named_tried[named] = named_tried.get(named, 0) + 1
            child = subprocess.Popen([sys.executable, __file__, "--child", dash_root], env=environ,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                child.wait(timeout=rng.uniform(0.1, 0.6) if named is None else 4)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.wait()
            else:
                if child.returncode != -signal.SIGKILL:
                    raise Damage(f"writer {kill} exited with {child.returncode}: {child.stderr.read()}")
                named_fired[named] = named_fired.get(named, 0) + 1
            child.stdout.close()
            child.stderr.close()
            if os.path.exists(os.path.join(dash_root, *PREFIX.split("/"), "data.mdb")):
                counts = verify(dash_root, counts, full=kill % full_every == 0)
            if kill % 50 == 0:
                log(f"{kill} kills, counts {counts}, {time.monotonic() - started:.0f} s")
        final = finish(dash_root, counts)
        return {"kills": kills, "runs": runs, "named_fired": named_fired, "named_tried": named_tried,
                "counts": final, "points_checked": points_checked + sum(final.values()),
                "seconds": round(time.monotonic() - started, 1)}
    finally:
        if own:
            shutil.rmtree(top, ignore_errors=True)


def finish(dash_root, counts):
    """A last writer runs to completion (no unlock needed); then check everything."""
    done = subprocess.run([sys.executable, "-c", _FINISH, dash_root], capture_output=True, text=True)
    if done.returncode != 0:
        raise Damage(f"a writer after the kills failed: {done.stderr}")
    final = verify(dash_root, counts, full=True, settled=True)
    if final["a"] <= counts.get("a", 0):
        raise Damage("the final writer could not continue the run")
    return final


_FINISH = f"""
import sys, ml_dash
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from crash_loop import PREFIX, log_snapshot
exp = ml_dash.Experiment(prefix=PREFIX, dash_root=sys.argv[1])
with exp.run:
    index = len(exp.metrics("a"))
    for _ in range(20):
        index = log_snapshot(exp, index)
assert ml_dash.load(PREFIX, dash_root=sys.argv[1]).status == "COMPLETED"
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--long", action="store_true", help="1,000 kills")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", help="keep the store here (default: a temporary directory)")
    parser.add_argument("--full-every", type=int, default=25,
                        help="re-read every row and run ml_dash.check every N kills")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        writer_main(args.child)
        return
    kills = 1000 if args.long else args.kills
    summary = run(kills, seed=args.seed, dash_root=args.dir, full_every=args.full_every,
                  log=lambda text: print(text, flush=True))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
