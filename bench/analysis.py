"""Benchmark of the analysis reads: listing runs and downsampling a long column.

    python bench/analysis.py            # 1,000 runs, a 100,000,000-point column
    python bench/analysis.py --quick    # a smoke run: 50 runs, 2,000,000 points

Measures, each as the median of repeated runs, against a floor measured in
the same run:

1. ``list_experiments`` over N runs; floor: ``os.walk`` of the same tree
   (finding the directories, reading nothing).  Also the per-run cost for
   runs of 10 points and of 100,000 points, to show it does not depend on
   run length.
2. A 2,000-point plot series (``minmax`` and ``lttb``) from a float64 column
   file of M points (800 MB for 100M), opened the way a view opens it; each
   repetition in a fresh process, which reports its time and the growth of
   its private memory (``Private_Clean + Private_Dirty`` of
   ``/proc/self/smaps_rollup``) and of its peak RSS (``VmHWM``, reset first).
   Floor: one ``max()`` over the mapped column (one pass over every point).
   The page cache is warm (the file was just written).

Writes ``bench/analysis-results.md``.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import ml_dash  # noqa: E402
from ml_dash import Experiment  # noqa: E402


def median_time(function, repeat):
    """``(median wall seconds, median CPU seconds)`` of ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def make_runs(root, count, points, streams=("train", "eval")):
    for i in range(count):
        with Experiment(prefix=f"bench/proj-{i % 10}/run-{i}", dash_root=root).run as exp:
            for step in range(points):
                for name in streams:
                    exp.metrics(name).log(loss=1.0 / (step + 1), accuracy=step / max(points, 1))
                exp.metrics.log(step=step)
                if step % 1000 == 999:
                    exp.flush()


def bench_listing(work, runs, repeat, long_run=100_000):
    root = os.path.join(work, "many")
    start = time.perf_counter()
    make_runs(root, runs, points=10)
    made = time.perf_counter() - start
    listing = ml_dash.list_experiments(root)
    assert len(listing) == runs, len(listing)
    listed = median_time(lambda: ml_dash.list_experiments(root), repeat)
    walked = median_time(lambda: sum(1 for _ in os.walk(root)), repeat)
    globbed = median_time(lambda: ml_dash.list_experiments(root, "bench/proj-3/*"), repeat)

    # Per-run cost for short and long runs, measured alternately so that
    # load from other processes falls on both alike.
    lengths = (10, long_run)
    roots = {}
    for points in lengths:
        roots[points] = os.path.join(work, f"len-{points}")
        make_runs(roots[points], 5, points, streams=("train",))
    samples = {points: [] for points in lengths}
    for _ in range(5 * repeat):
        for points in lengths:
            samples[points].append(median_time(lambda: ml_dash.list_experiments(roots[points]), 1))
    per_run = {points: tuple(statistics.median(s[i] for s in samples[points]) / 5 for i in (0, 1))
               for points in lengths}
    return {"runs": runs, "make_s": made, "list_s": listed, "walk_s": walked,
            "glob_s": globbed, "per_run_s": per_run}


def make_column(path, points):
    """A float64 column file of a random walk, written in chunks."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, points * 8)
    finally:
        os.close(fd)
    column = np.memmap(path, dtype="<f8", mode="r+", shape=(points,))
    rng = np.random.default_rng(0)
    last, step = 0.0, 1 << 22
    for a in range(0, points, step):
        b = min(a + step, points)
        walk = np.cumsum(rng.random(b - a) - 0.5) + last
        column[a:b] = walk
        last = walk[-1]
    column.flush()
    del column


CHILD = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {root!r})
    from ml_dash.storage.columns import ColumnMap
    from ml_dash.downsample import downsample

    def memory():
        out = {{}}
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    out[parts[0].rstrip(":")] = int(parts[1])
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmHWM", "VmRSS")):
                    out[line.split(":")[0]] = int(line.split()[1])
        return out

    method, path, points, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    values = ColumnMap(path).view(points)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS
    before = memory()
    start, cpu = time.perf_counter(), time.process_time()
    if method == "floor":
        result = float(values.max())
    else:
        picked, ys = downsample(values, n, method)
        result = len(picked)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = memory()
    private = lambda m: m["Private_Clean"] + m["Private_Dirty"]
    print(json.dumps({{"s": elapsed, "cpu_s": cpu, "private_mb": (private(after) - private(before)) / 1024,
                      "peak_mb": (after["VmHWM"] - before["VmRSS"]) / 1024, "result": result}}))
""")


def bench_downsample(work, points, n, repeat):
    path = os.path.join(work, "column.f64")
    start = time.perf_counter()
    make_column(path, points)
    made = time.perf_counter() - start
    child = CHILD.format(root=os.path.dirname(HERE))
    out = {"points": points, "n": n, "make_s": made}
    for method in ("floor", "minmax", "lttb"):
        samples = []
        for _ in range(repeat):
            done = subprocess.run([sys.executable, "-c", child, method, path, str(points), str(n)],
                                  capture_output=True, text=True, check=True)
            samples.append(json.loads(done.stdout))
        out[method] = {key: statistics.median(s[key] for s in samples)
                       for key in ("s", "cpu_s", "private_mb", "peak_mb")}
        out[method]["max_private_mb"] = max(s["private_mb"] for s in samples)
        out[method]["result"] = samples[0]["result"]
    os.remove(path)
    return out


def report(listing, sampled, command):
    long_run = max(listing["per_run_s"])
    import lmdb
    lines = [
        "# Analysis benchmark", "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, py-lmdb {lmdb.__version__}.",
        "Medians of repeated runs; ratios against a floor measured in the same run. "
        f"Load average when the report was written: {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores (the machine is shared: wall times include waiting for a core, "
        "CPU times do not).", "",
        "## list_experiments", "",
        "| what | median wall time | median CPU time | ratio to floor (wall) |",
        "|---|---:|---:|---:|",
        f"| `list_experiments` over {listing['runs']:,} runs (3 streams each) | "
        f"{listing['list_s'][0] * 1e3:.0f} ms | {listing['list_s'][1] * 1e3:.0f} ms | "
        f"{listing['list_s'][0] / listing['walk_s'][0]:.1f}x |",
        f"| floor: `os.walk` of the same tree | {listing['walk_s'][0] * 1e3:.1f} ms | "
        f"{listing['walk_s'][1] * 1e3:.1f} ms | 1x |",
        f"| with pattern `bench/proj-3/*` ({listing['runs'] // 10:,} runs match) | "
        f"{listing['glob_s'][0] * 1e3:.0f} ms | {listing['glob_s'][1] * 1e3:.0f} ms | |",
        f"| per run, runs of 10 points | {listing['per_run_s'][10][0] * 1e6:.0f} us | "
        f"{listing['per_run_s'][10][1] * 1e6:.0f} us | |",
        f"| per run, runs of {long_run:,} points | {listing['per_run_s'][long_run][0] * 1e6:.0f} us | "
        f"{listing['per_run_s'][long_run][1] * 1e6:.0f} us | |",
        "", "## Downsampling a long column", "",
        f"{sampled['points']:,}-point float64 column ({sampled['points'] * 8 / 1e6:,.0f} MB) to "
        f"{sampled['n']:,} points, each repetition in a fresh process, page cache warm.", "",
        "| method | median time | CPU time | ratio to floor | private memory growth "
        "(median / max) | peak RSS growth |", "|---|---:|---:|---:|---:|---:|",
    ]
    floor = sampled["floor"]["s"]
    for method, label in (("minmax", "`minmax`"), ("lttb", "`lttb` (MinMaxLTTB past 1M points)"),
                          ("floor", "floor: one `max()` over the map")):
        m = sampled[method]
        lines.append(f"| {label} | {m['s']:.3f} s | {m['cpu_s']:.3f} s | {m['s'] / floor:.2f}x | "
                     f"{m['private_mb']:.1f} / {m['max_private_mb']:.1f} MB | {m['peak_mb']:.1f} MB |")
    lines += ["", "The floor keeps every page it read mapped in the process (its private memory is "
              "the column); the downsampling walk hands each chunk's pages back to the kernel.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes")
    parser.add_argument("--out", default=os.path.join(HERE, "analysis-results.md"))
    args = parser.parse_args()
    runs, points, repeat, long_run = (
        (30, 2_000_000, 3, 10_000) if args.quick else (1000, 100_000_000, 5, 100_000))
    work = tempfile.mkdtemp(prefix="ml_dash_bench_")
    try:
        listing = bench_listing(work, runs, repeat, long_run)
        print(json.dumps(listing))
        sampled = bench_downsample(work, points, 2000, repeat)
        print(json.dumps(sampled))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = "python bench/analysis.py" + (" --quick" if args.quick else "")
    text = report(listing, sampled, command)
    if not args.quick:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
