"""Cost of the reliability machinery on the hot path, and kill-loop throughput.

    python bench/reliability.py --baseline /path/to/other/checkout   # A/B the write path
    python bench/reliability.py --kills 20                           # kill-loop rate too

The fault points (``ml_dash/storage/faults.py``) sit in the write path; with
``ML_DASH_FAULT`` unset they cost one test of a module flag per flush.  This
measures that: the same workload (per step, ``log()`` on two streams and the
root, then ``flush()``) with this tree's ``ml_dash`` and with the tree given
by ``--baseline``, alternating A and B in fresh processes, and prints the
median microseconds per step of each and their ratio.  The machine is shared
and noisy: read the ratio, not the absolute figures.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEPS = """
import sys, tempfile, time, ml_dash
steps = int(sys.argv[1])
with tempfile.TemporaryDirectory() as root:
    exp = ml_dash.Experiment(prefix="bench/rel/run", dash_root=root)
    with exp.run:
        train, evaluate, top = exp.metrics("train"), exp.metrics("eval"), exp.metrics
        start = time.perf_counter()
        for step in range(steps):
            train.log(loss=1.0 / (step + 1), accuracy=step / steps)
            evaluate.log(loss=2.0 / (step + 1), accuracy=step / steps)
            top.log(epoch=step // 1000)
            top.flush()
        elapsed = time.perf_counter() - start
print(elapsed / steps * 1e6, ml_dash.__file__)
"""


def per_step(tree, steps):
    env = dict(os.environ, PYTHONPATH=tree)
    env.pop("ML_DASH_FAULT", None)
    out = subprocess.run([sys.executable, "-c", STEPS, str(steps)], env=env, capture_output=True,
                         text=True, check=True, cwd=tempfile.gettempdir())
    micros, location = out.stdout.split()
    assert location.startswith(tree), (location, tree)
    return float(micros)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="another checkout of ml_dash to compare the write path with")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--kills", type=int, default=0, help="also time this many kill-loop kills")
    args = parser.parse_args()
    result = {}
    if args.baseline:
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(per_step(HERE, args.steps))
            theirs.append(per_step(os.path.abspath(args.baseline), args.steps))
        result["us_per_step_this_tree"] = round(statistics.median(ours), 2)
        result["us_per_step_baseline"] = round(statistics.median(theirs), 2)
        result["ratio"] = round(statistics.median(ours) / statistics.median(theirs), 3)
        result["samples_this_tree"] = [round(v, 2) for v in ours]
        result["samples_baseline"] = [round(v, 2) for v in theirs]
    if args.kills:
        sys.path.insert(0, os.path.join(HERE, "tests"))
        import crash_loop
        start = time.perf_counter()
        summary = crash_loop.run(args.kills, seed=1, log=lambda text: None)
        result["kills"] = args.kills
        result["kills_per_second"] = round(args.kills / (time.perf_counter() - start), 2)
        result["points_checked"] = summary["points_checked"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
