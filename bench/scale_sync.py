"""Benchmark of ``ml_dash.sync``: runs appended to a Parquet dataset.

    python bench/scale_sync.py            # 1,000 runs x 100,000 points
    python bench/scale_sync.py --quick    # a smoke run: 20 runs x 2,000 points

The source runs (stream ``train`` with ``loss`` and ``step``) are built once
under ``--store`` (default ``$TMPDIR/ml_dash_scale_sync``) through the public
API and reused while their count and length match.  Measured, as the median
of ``--repeats`` rounds:

1. a first sync into an empty folder, in points per second;
2. a second sync with nothing new (every run is opened and compared);
3. floors over the same arrays, read from the same memory maps: encoding
   them to Parquet in memory with the options sync uses (the encoder alone),
   and the same with the bytes written to files (the encoder plus the disk,
   without sync's fsyncs and renames), and with zstd instead of snappy.

Prints a table; with ``--write`` also writes ``bench/results/scale_sync.md``.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import ml_dash  # noqa: E402

BUILD = """
import sys, numpy as np, ml_dash
root, first, stop, points = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for r in range(first, stop):
    rng = np.random.default_rng(r)
    losses = rng.random(points).tolist()
    with ml_dash.Experiment(prefix=f"bench/sync/run-{r:05d}", dash_root=root).run as exp:
        exp.params.set(lr=float(rng.random()), seed=r)
        train = exp.metrics("train")
        for step, loss in enumerate(losses):
            train.log(loss=loss, step=step)
            if step % 10_000 == 9_999:
                train.flush()
"""


def build(root, runs, points):
    """The source runs under ``root``, built by two processes unless already there."""
    stamp = os.path.join(root, f".built-{runs}x{points}")
    if os.path.exists(stamp):
        return False
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    half = runs // 2
    children = [subprocess.Popen([sys.executable, "-c", BUILD, root, str(a), str(b), str(points)])
                for a, b in ((0, half), (half, runs))]
    if any(child.wait() for child in children):
        sys.exit("building the source runs failed")
    open(stamp, "w").close()
    return True


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def floors(root, dest, runs):
    """Seconds to encode every run's stream in one thread: to memory as sync does, and to
    files (no rename) uncompressed with and without fsync, with snappy and with zstd; first
    the time to read the stores' columns once, which the first of them would pay."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ml_dash.analysis.sync import _encode, _part_table
    views = [ml_dash.load(run["prefix"], dash_root=root) for run in runs]
    tables = [_part_table(view.metrics("train"), 0, len(view.metrics("train"))) for view in views]
    os.makedirs(dest, exist_ok=True)
    # The tables wrap the memory maps: the first pass over them reads the stores' pages.
    touched = timed(lambda: [pc.sum(column) for table in tables for column in table.columns])

    def to_files(compression, durable=False):
        for number, table in enumerate(tables):
            path = os.path.join(dest, f"{number}.parquet")
            pq.write_table(table, path, compression=compression, use_dictionary=False)
            if durable:
                with open(path, "rb+") as f:
                    os.fsync(f.fileno())

    out = {"read the stores' columns once (page cache)": touched,
           "encode to memory, sync's options": timed(lambda: [_encode(t).size for t in tables]),
           "write files, uncompressed": timed(lambda: to_files("none")),
           "write files, uncompressed, fsync each": timed(lambda: to_files("none", durable=True)),
           "write files, snappy": timed(lambda: to_files("snappy")),
           "write files, zstd": timed(lambda: to_files("zstd"))}
    for view in views:
        view.close()
    return out


def folder_size(folder):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 runs x 2,000 points, 1 round")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", default=os.path.join(tempfile.gettempdir(), "ml_dash_scale_sync"))
    parser.add_argument("--pattern", help="sync only the runs this glob matches (e.g. "
                                          "'bench/sync/run-000??' for the first 100)")
    parser.add_argument("--write", action="store_true", help="write bench/results/scale_sync.md")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.points, args.repeats = 20, 2_000, 1
        args.store = tempfile.mkdtemp(prefix="ml_dash_scale_sync_quick_")
    root = os.path.join(args.store, "runs")
    started = time.perf_counter()
    if build(root, args.runs, args.points):
        print(f"built {args.runs} runs x {args.points} points in {time.perf_counter() - started:.0f} s")
    runs = ml_dash.list_experiments(root, args.pattern)
    total = sum(run["points"] for run in runs)
    dest = os.path.join(args.store, "dataset")
    first, again, size = [], [], 0
    for _ in range(args.repeats):
        shutil.rmtree(dest, ignore_errors=True)
        first.append(timed(lambda: ml_dash.sync(dest, args.pattern, dash_root=root)))
        again.append(timed(lambda: ml_dash.sync(dest, args.pattern, dash_root=root)))
        size = folder_size(dest)
    floor = floors(root, os.path.join(args.store, "floor"), runs)
    shutil.rmtree(os.path.join(args.store, "floor"))
    rows = [("sync, first (into an empty folder)", statistics.median(first)),
            ("sync, again with nothing new", statistics.median(again)),
            *(("floor: " + name, seconds) for name, seconds in floor.items())]
    load = os.getloadavg()[0]
    lines = [f"{len(runs)} runs x {args.points} points ({total:,} points; columns index, _ts, loss, "
             f"step); dataset {size / 1e6:.0f} MB; median of {args.repeats}; load average "
             f"{load:.1f} on {os.cpu_count()} CPUs at the end",
             "", "| what | seconds | M points/s |", "|---|---|---|"]
    for name, seconds in rows:
        rate = "" if "nothing new" in name else f"{total / seconds / 1e6:.1f}"
        lines.append(f"| {name} | {seconds:.3f} | {rate} |")
    print("\n".join(lines))
    if args.write:
        with open(os.path.join(HERE, "results", "scale_sync.md"), "w") as f:
            f.write("# bench/scale_sync.py\n\n" + "\n".join(lines) + "\n")
    if args.quick:
        shutil.rmtree(args.store)


if __name__ == "__main__":
    main()
