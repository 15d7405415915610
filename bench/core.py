"""Core engine benchmark: ml_dash against raw floors measured in the same run.

    python bench/core.py            # full: 100,000 steps, 5 repeats
    python bench/core.py --quick    # smoke run

Workload per step: ``metrics("train").log(loss, accuracy)``,
``metrics("eval").log(loss, accuracy)``, ``metrics.log(epoch=...).flush()``;
and, beside each other, one ``metrics("pose").log`` or one
``tracks("pose").append`` of the same four fields, flushed every step.
Every figure is the median of the repeats, quoted beside the floor it is
compared with; the machine is shared and noisy, so read ratios, not
absolute times.
"""

import argparse
import gc
import json
import marshal
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import lmdb
import numpy as np

import ml_dash


def median_of(repeats, function):
    values = []
    for _ in range(repeats):
        gc.collect()
        values.append(function())
    return statistics.median(values), min(values), max(values)


def floor_lmdb(directory, steps, dumps=marshal.dumps):
    """Raw py-lmdb: 3 points encoded with ``dumps``, one write txn per step, sync=False."""
    env = lmdb.open(directory, map_size=1 << 30, max_dbs=8, sync=False, metasync=False)
    dbs = [env.open_db(name) for name in (b"train", b"eval", b"root")]
    key = struct.Struct(">Q").pack
    start = time.perf_counter()
    for step in range(steps):
        ts = time.time()
        with env.begin(write=True) as txn:
            k = key(step)
            txn.put(k, dumps({"loss": 1.0 / (step + 1), "accuracy": step / steps, "_ts": ts}),
                    db=dbs[0], append=True)
            txn.put(k, dumps({"loss": 2.0 / (step + 1), "accuracy": step / steps, "_ts": ts}),
                    db=dbs[1], append=True)
            txn.put(k, dumps({"epoch": step // 1000, "_ts": ts}), db=dbs[2], append=True)
    elapsed = time.perf_counter() - start
    env.close()
    return elapsed / steps * 1e6


def _json_dumps(value):
    return json.dumps(value).encode()


def ml_dash_steps(directory, steps, flush_every=1, sync_interval=1.0):
    exp = ml_dash.Experiment(prefix="bench/core/run", dash_root=directory, sync_interval=sync_interval)
    with exp.run:
        train, evaluate, root = exp.metrics("train"), exp.metrics("eval"), exp.metrics
        start = time.perf_counter()
        for step in range(steps):
            train.log(loss=1.0 / (step + 1), accuracy=step / steps)
            evaluate.log(loss=2.0 / (step + 1), accuracy=step / steps)
            root.log(epoch=step // 1000)
            if (step + 1) % flush_every == 0:
                root.flush()
        elapsed = time.perf_counter() - start
    return elapsed / steps * 1e6


def pose_steps(directory, steps, track):
    """One call per step with the same fields, then a flush: ``metrics("pose").log`` or
    ``tracks("pose").append`` (times by default: the track's are made strictly increasing)."""
    exp = ml_dash.Experiment(prefix="bench/core/pose", dash_root=directory)
    with exp.run:
        write = exp.tracks("pose").append if track else exp.metrics("pose").log
        flush = exp.flush
        start = time.perf_counter()
        for step in range(steps):
            write(step=step, x=step * 0.1, y=1.0 / (step + 1), z=-0.5)
            flush()
        elapsed = time.perf_counter() - start
    return elapsed / steps * 1e6


def floor_list_append(calls):
    staged = []

    def log(**fields):
        staged.append(fields)

    start = time.perf_counter()
    for i in range(calls):
        log(loss=1.0 / (i + 1), accuracy=0.5)
    return (time.perf_counter() - start) / calls * 1e6


def ml_dash_log_only(directory, calls):
    exp = ml_dash.Experiment(prefix="bench/core/logonly", dash_root=directory)
    with exp.run:
        train = exp.metrics("train")
        start = time.perf_counter()
        for i in range(calls):
            train.log(loss=1.0 / (i + 1), accuracy=0.5)
        elapsed = time.perf_counter() - start
    return elapsed / calls * 1e6


def fresh(root, name):
    path = os.path.join(root, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def interleaved(repeats, pairs):
    """Run each (name, function) once per round, rounds alternating, so that
    a noisy neighbour slows every system alike; returns {name: [values]}."""
    out = {name: [] for name, _ in pairs}
    for _ in range(repeats):
        for name, function in pairs:
            gc.collect()
            out[name].append(function())
    return out


def column_figures(root, points, repeats):
    """column() over `points` values against numpy.load of the same .npy file."""
    directory = fresh(root, "col")
    exp = ml_dash.Experiment(prefix="bench/core/col", dash_root=directory)
    values = np.random.default_rng(0).random(points)
    with exp.run:
        stream = exp.metrics("train")
        for start in range(0, points, 10_000):
            for value in values[start:start + 10_000].tolist():
                stream.log(loss=value)
            stream.flush()
    npy = os.path.join(directory, "loss.npy")
    np.save(npy, values)
    view = ml_dash.load("bench/core/col", dash_root=directory)
    stream = view.metrics("train")
    assert np.array_equal(stream.column("loss"), values)

    def ours():
        start = time.perf_counter()
        column = stream.column("loss")
        column.sum()  # touch every value, as np.load does by reading them
        return (time.perf_counter() - start) * 1e3

    def floor():
        start = time.perf_counter()
        np.load(npy).sum()
        return (time.perf_counter() - start) * 1e3

    rng = random.Random(1)

    def random_reads():
        start = time.perf_counter()
        stream.read(start_index=rng.randrange(points - 1000), limit=1000)
        return (time.perf_counter() - start) * 1e3

    figures = interleaved(repeats * 4, [("column", ours), ("np.load", floor)])
    figures["read(k, 1000)"] = [random_reads() for _ in range(repeats * 20)]
    view.close()
    return figures


def open_figures(root, repeats, sizes=(10_000, 1_000_000), streams=20):
    """Time to open an experiment with `streams` streams, for total point counts `sizes`."""
    out = {}
    for total in sizes:
        directory = fresh(root, f"open{total}")
        exp = ml_dash.Experiment(prefix="bench/core/open", dash_root=directory)
        per = total // streams
        with exp.run:
            for s in range(streams):
                stream = exp.metrics(f"s{s}")
                for start in range(0, per, 10_000):
                    for i in range(start, min(per, start + 10_000)):
                        stream.log(v=float(i))
                    stream.flush()
        code = ("import time, ml_dash; t = time.perf_counter(); "
                f"v = ml_dash.load('bench/core/open', dash_root={directory!r}); "
                "n = sum(len(v.metrics(f's{i}')) for i in range(20)); "
                "print((time.perf_counter() - t) * 1e3, n)")
        times = []
        for _ in range(repeats):
            ms, n = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   check=True).stdout.split()
            assert int(n) == per * streams
            times.append(float(ms))
        out[total] = times
        # Reopening for writing rebuilds nothing after a clean close either.
        start = time.perf_counter()
        ml_dash.Experiment(prefix="bench/core/open", dash_root=directory).run.start().run.complete()
        out[f"{total} writer"] = [(time.perf_counter() - start) * 1e3]
    return out


def report(title, unit, figures, baseline=None):
    print(f"\n{title}")
    base = statistics.median(figures[baseline]) if baseline else None
    for name, values in figures.items():
        med = statistics.median(values)
        ratio = f"  {med / base:5.2f}x {baseline}" if base and name != baseline else ""
        print(f"  {str(name):48s} median {med:9.3f} {unit}  (min {min(values):.3f}, "
              f"max {max(values):.3f}, n={len(values)}){ratio}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    steps = args.steps or (2_000 if args.quick else 100_000)
    repeats = args.repeats or (1 if args.quick else 5)
    points = 20_000 if args.quick else 1_000_000
    root = tempfile.mkdtemp(prefix="ml_dash-bench-")
    try:
        print(f"ml_dash {ml_dash.__version__}, lmdb {lmdb.__version__}, numpy {np.__version__}, "
              f"Python {sys.version.split()[0]}; {steps} steps, {repeats} rounds")
        floor = "floor: py-lmdb + marshal, 1 txn/step"
        report("write, microseconds per step (3 points)", "us", interleaved(repeats, [
            (floor, lambda: floor_lmdb(fresh(root, "floor"), steps)),
            ("floor: py-lmdb + json, 1 txn/step",
             lambda: floor_lmdb(fresh(root, "floorjson"), steps, dumps=_json_dumps)),
            ("ml_dash, flush every step", lambda: ml_dash_steps(fresh(root, "md"), steps)),
            ("ml_dash, flush every 100 steps",
             lambda: ml_dash_steps(fresh(root, "md100"), steps, flush_every=100)),
        ]), baseline=floor)
        metric_pose = "ml_dash metrics log + flush per step"
        report("track against stream, microseconds per step (1 entry of 4 fields, flushed)", "us",
               interleaved(repeats, [
                   (metric_pose, lambda: pose_steps(fresh(root, "mpose"), steps, track=False)),
                   ("ml_dash track append + flush per step",
                    lambda: pose_steps(fresh(root, "tpose"), steps, track=True)),
               ]), baseline=metric_pose)
        small = max(500, steps // 20)
        report(f"write with fsync per flush, microseconds per step ({small} steps)", "us", interleaved(
            max(1, repeats // 2), [
                ("ml_dash, flush every step, sync_interval=0",
                 lambda: ml_dash_steps(fresh(root, "md0"), small, sync_interval=0)),
            ]))
        calls = min(steps, 50_000)  # below the auto-flush backlog: log() alone
        report("log() alone, microseconds per call", "us", interleaved(repeats, [
            ("floor: list append of kwargs", lambda: floor_list_append(calls)),
            ("ml_dash log(loss, accuracy), staged", lambda: ml_dash_log_only(fresh(root, "lo"), calls)),
        ]), baseline="floor: list append of kwargs")
        report(f"reads over {points} points, milliseconds", "ms",
               column_figures(root, points, repeats), baseline="np.load")
        report("open in a new process (20 streams), milliseconds, by total points", "ms",
               open_figures(root, repeats, sizes=(10_000, 20_000) if args.quick else (10_000, 1_000_000)))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
