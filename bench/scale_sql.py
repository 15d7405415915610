"""Many runs: SQL over runs and listing, at the sizes users reach with sweeps.

    python bench/scale_sql.py            # full: the figures of docs/many-runs.md
    python bench/scale_sql.py --quick    # smoke run (small stores, in CI)

Measured, each the median of ``--repeats`` runs (the machine is shared and
noisy):

- ``ml_dash.sql("select prefix, max(loss) from metrics group by prefix")``
  over 1,000 runs x 100,000 points (target: under 2 s);
- a query on params alone over 10,000 runs of 100 points (target: 0.5 s);
- ``list_experiments`` over 1,000, 10,000 and 100,000 runs of 100 points
  (target for 100,000: 10 s).

The stores are built once under ``--root`` (default /tmp/ml_dash_scale) with
the public API, in ``--processes`` processes, and reused while present
(a ``built`` marker file says a store is complete).  Listing a fresh run
reads the summary its writer saved at close; ``--no-summaries`` measures
the same listing with the summaries removed (every run read from LMDB).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from measure import python_speed_ms  # noqa: E402

import ml_dash  # noqa: E402


def _write_runs(args):
    """Runs ``first .. first + count - 1`` of a store: params and ``points`` points each."""
    root, first, count, points = args
    steps = np.arange(points)
    losses = (1.0 / (1.0 + steps)).tolist()
    for i in range(first, first + count):
        prefix = f"bench/sweep/run-{i:06d}"
        with ml_dash.Experiment(prefix, dash_root=root).run as exp:
            exp.params.set(lr=10 ** -(1 + i % 4), seed=i, model={"depth": 2 + i % 6, "name": f"m{i % 3}"})
            log = exp.metrics.log
            for step, loss in zip(range(points), losses):
                log(step=step, loss=loss * (1 + i % 7))
                if step % 10_000 == 9_999:
                    exp.flush()


def build(root, runs, points, processes):
    """A store of ``runs`` runs of ``points`` points under ``root``, reused when complete."""
    marker = os.path.join(root, "built")
    if os.path.exists(marker):
        return 0.0
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    share = -(-runs // processes)
    jobs = [(root, first, min(share, runs - first), points) for first in range(0, runs, share)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_write_runs, jobs)
    with open(marker, "w") as f:
        f.write(f"{runs} runs x {points} points\n")
    return time.perf_counter() - started


def timed(function, repeats):
    """``(median, min, max)`` wall seconds of ``repeats`` calls; the median CPU
    seconds of this process (all its threads) are printed beside them, since on a
    shared machine the wall time mostly measures the other tenants."""
    values, cpu = [], []
    for _ in range(repeats):
        started, used = time.perf_counter(), time.process_time()
        function()
        values.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    print(f"  (cpu {statistics.median(cpu):.3f} s, load average {os.getloadavg()[0]:.1f})")
    return statistics.median(values), min(values), max(values)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small stores, one repeat")
    parser.add_argument("--root", default="/tmp/ml_dash_scale", help="where the stores are built")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--no-summaries", action="store_true",
                        help="also list with the saved summaries moved away (every run from LMDB)")
    args = parser.parse_args(argv)
    if args.quick:
        sizes = {"long": (5, 1_000), "small": [20, 40]}
        repeats = 1
        args.root = os.path.join(args.root, "quick")
    else:
        sizes = {"long": (1_000, 100_000), "small": [1_000, 10_000, 100_000]}
        repeats = args.repeats

    print(f"{os.cpu_count()} CPUs, Python speed: sum(range(10**6)) {python_speed_ms():.1f} ms")
    runs, points = sizes["long"]
    long_root = os.path.join(args.root, f"long-{runs}x{points}")
    took = build(long_root, runs, points, args.processes)
    if took:
        print(f"built {runs:,} runs x {points:,} points in {took:.0f} s")
    query = "select prefix, max(loss) from metrics group by prefix"
    result = ml_dash.sql(query, dash_root=long_root).fetchall()
    assert len(result) == runs, len(result)
    median, low, high = timed(lambda: ml_dash.sql(query, dash_root=long_root).fetchall(), repeats)
    print(f"sql max(loss) group by prefix, {runs:,} runs x {points:,} points: "
          f"median {median:.3f} s (min {low:.3f}, max {high:.3f}); target 2 s")

    for count in sizes["small"]:
        root = os.path.join(args.root, f"small-{count}x100")
        took = build(root, count, 100, args.processes)
        if took:
            print(f"built {count:,} runs x 100 points in {took:.0f} s ({took / count * 1e3:.2f} ms a run)")
        median, low, high = timed(lambda: ml_dash.list_experiments(root), repeats)
        print(f"list_experiments, {count:,} runs: median {median:.3f} s (min {low:.3f}, max {high:.3f})"
              f"; {median / count * 1e6:.0f} us a run")
        if count == sizes["small"][1]:
            params_query = ("select \"model.depth\", count(*), min(lr) from params_wide "
                            "where lr > 0.005 group by 1 order by 1")
            assert ml_dash.sql(params_query, dash_root=root).fetchall()
            median, low, high = timed(lambda: ml_dash.sql(params_query, dash_root=root).fetchall(),
                                      repeats)
            print(f"sql on params_wide, {count:,} runs: median {median:.3f} s "
                  f"(min {low:.3f}, max {high:.3f}); target 0.5 s")
        if args.no_summaries and count == sizes["small"][0]:
            _without_summaries(root, count, repeats)


def _without_summaries(root, count, repeats):
    """The listing with every saved summary moved aside, then put back."""
    moved = []
    for directory in (run["path"] for run in ml_dash.list_experiments(root)):
        path = os.path.join(directory, "summary.json")
        if os.path.exists(path):
            os.rename(path, path + ".aside")
            moved.append(path)
    try:
        median, low, high = timed(lambda: ml_dash.list_experiments(root), repeats)
        print(f"list_experiments without summaries, {count:,} runs: median {median:.3f} s "
              f"({median / count * 1e6:.0f} us a run)")
    finally:
        for path in moved:
            os.rename(path + ".aside", path)


if __name__ == "__main__":
    main()
