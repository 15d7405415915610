"""Many small runs: what one short run costs, in time and on disk, beside the raw LMDB floor.

    python bench/scale_runs.py                       # 1,000 runs x 100 and x 1,000 points
    python bench/scale_runs.py --runs 200 --rounds 3 # quicker
    python bench/scale_runs.py --write bench/results/scale-runs.md

The workload is a sweep the way a user writes it: per run one
``with Experiment(prefix=..., dash_root=...).run as exp:`` and, per step,
``exp.metrics("train").log(loss=..., acc=...)``; the run is created, logged
and closed (its folder made, its store opened, the points committed and
synced, the lock released).  The floor does the same job with py-lmdb and
nothing else: its folder made, an LMDB environment created, one put per
point (8-byte key, the point's four float64: commit time, ``_ts``, loss,
acc) in one transaction, one ``sync``, closed.

The runs are split into ``--rounds`` rounds; each round makes its share of
ml_dash runs and of floor runs, in alternating order, so that a slow moment
of the shared machine slows both.  Time per run is the median over rounds.
Disk per run is the mean over every run made: allocated blocks
(``st_blocks * 512``) and apparent size (``st_size``), summed over the run
folder.  Where ``strace`` is installed, the fsyncs of one run
(``fsync``/``fdatasync``/``msync``/``sync_file_range``, all threads) are
counted over a separate batch of runs traced on their own, since tracing
slows the timing.
"""

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import lmdb
from measure import python_speed_ms

from ml_dash import Experiment

SYNC_CALLS = ("fsync", "fdatasync", "msync", "sync_file_range", "syncfs", "sync")
POINT = struct.Struct("<4d")


def ml_dash_run(dash_root, name, points):
    with Experiment(prefix=f"sweep/bench/{name}", dash_root=dash_root).run as exp:
        train = exp.metrics("train")
        for step in range(points):
            train.log(loss=1.0 / (step + 1), acc=step / points)


def floor_run(dash_root, name, points):
    path = os.path.join(dash_root, "sweep", "bench", name)
    os.makedirs(path)
    env = lmdb.open(path, map_size=1 << 20, sync=False, metasync=False)
    now = time.time()
    with env.begin(write=True) as txn:
        put = txn.put
        for step in range(points):
            put(step.to_bytes(8, "big"), POINT.pack(now, now, 1.0 / (step + 1), step / points))
    env.sync(True)
    env.close()


SYSTEMS = {"ml_dash": ml_dash_run, "raw LMDB floor": floor_run}


def disk_of(folder):
    """``(allocated bytes, apparent bytes, {file kind: allocated bytes})`` of every file under
    ``folder``; a file's kind is its name, or ``column`` for the files under ``columns/``."""
    blocks = apparent = 0
    kinds: dict = {}
    for directory, _, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            blocks += st.st_blocks * 512
            apparent += st.st_size
            kind = "column" if os.path.basename(directory).isdigit() and name.endswith(".f64") else name
            kinds[kind] = kinds.get(kind, 0) + st.st_blocks * 512
    return blocks, apparent, kinds


def measure(points, runs, rounds, work):
    """``{system: {"ms": [per round], "blocks": mean, "apparent": mean}}`` for runs of ``points``."""
    per_round = max(1, runs // rounds)
    out = {name: {"ms": []} for name in SYSTEMS}
    roots = {name: tempfile.mkdtemp(dir=work, prefix="runs-") for name in SYSTEMS}
    made = 0
    for number in range(rounds):
        order = list(SYSTEMS) if number % 2 == 0 else list(reversed(SYSTEMS))
        for name in order:
            run = SYSTEMS[name]
            start = time.perf_counter()
            for index in range(made, made + per_round):
                run(roots[name], f"run{index}", points)
            out[name]["ms"].append((time.perf_counter() - start) / per_round * 1e3)
        made += per_round
    for name, root in roots.items():
        blocks, apparent, kinds = disk_of(root)
        out[name]["blocks"] = blocks / made
        out[name]["apparent"] = apparent / made
        out[name]["kinds"] = {kind: size / made for kind, size in sorted(kinds.items())}
        out[name]["runs"] = made
        shutil.rmtree(root)
    return out


def count_syncs(points, runs, work):
    """Sync calls per run of each system, counted by ``strace -f -c``; None without strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    counts = {}
    for name in SYSTEMS:
        root = tempfile.mkdtemp(dir=work, prefix="traced-")
        report = os.path.join(work, "strace.txt")
        code = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import scale_runs\n"
                f"for i in range({runs}): scale_runs.SYSTEMS[{name!r}]({root!r}, f'run{{i}}', {points})")
        subprocess.run([strace, "-f", "-c", "-o", report, "-e", "trace=" + ",".join(SYNC_CALLS),
                        sys.executable, "-c", code], check=True, capture_output=True)
        # Import and start-up make no sync call: every one counted belongs to the runs.
        total = 0
        with open(report) as lines:
            for line in lines:
                fields = line.split()
                if fields and fields[-1] in SYNC_CALLS:
                    total += int(fields[3])
        counts[name] = total / runs
        shutil.rmtree(root)
    return counts


def table(results, syncs):
    lines = ["| points per run | system | ms per run (median of rounds) | KB on disk per run "
             "(allocated) | KB per run (apparent) | sync calls per run |",
             "|---:|---|---:|---:|---:|---:|"]
    for points, figures in results.items():
        for name, got in figures.items():
            synced = "n/a" if syncs is None else f"{syncs[points][name]:.1f}"
            lines.append(f"| {points:,} | {name} | {statistics.median(got['ms']):.2f} | "
                         f"{got['blocks'] / 1024:.1f} | {got['apparent'] / 1024:.1f} | {synced} |")
    lines += ["", "Allocated per run, by file (KB):", "",
              "| points per run | system | " + " | ".join(_KINDS) + " |",
              "|---:|---|" + "---:|" * len(_KINDS)]
    for points, figures in results.items():
        for name, got in figures.items():
            sizes = [got["kinds"].get(kind, 0) / 1024 for kind in _KINDS]
            lines.append(f"| {points:,} | {name} | " + " | ".join(f"{size:.1f}" for size in sizes) + " |")
    return "\n".join(lines)


_KINDS = ("data.mdb", "lock.mdb", "column", "summary.json", "writer.lock")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs of each system per point count")
    parser.add_argument("--points", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--traced", type=int, default=50, help="runs traced to count sync calls")
    parser.add_argument("--dir", default=None, help="where the runs are made (default: a temporary folder)")
    parser.add_argument("--write", default=None, help="also write the table as markdown to this file")
    args = parser.parse_args()
    work = tempfile.mkdtemp(dir=args.dir, prefix="ml_dash-scale-")
    try:
        results = {points: measure(points, args.runs, args.rounds, work) for points in args.points}
        syncs = None
        if args.traced:
            per_points = {points: count_syncs(points, args.traced, work) for points in args.points}
            syncs = None if None in per_points.values() else per_points
    finally:
        shutil.rmtree(work, ignore_errors=True)
    runs = next(iter(next(iter(results.values())).values()))["runs"]
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    heading = (f"{runs:,} runs per row, 2 keys per point, {args.rounds} interleaved rounds, "
               f"load average {load} at the end on {os.cpu_count()} CPUs "
               f"(Python speed: `sum(range(10**6))` {python_speed_ms():.1f} ms); "
               f"`python bench/scale_runs.py --runs {args.runs} --rounds {args.rounds} "
               f"--points {' '.join(map(str, args.points))}`")
    text = heading + "\n\n" + table(results, syncs) + "\n"
    print(text)
    if args.write:
        with open(args.write, "w") as out:
            out.write(text)


if __name__ == "__main__":
    main()
