"""Hot paths of two source trees of ml_dash, measured in interleaved rounds.

    python bench/ab.py BASE [CHANGED]      # CHANGED defaults to this checkout
    python bench/ab.py ../ml_dash-main . --rounds 11 --steps 20000

Each round runs the ``bench/core.py`` workloads (three points logged and one
flush per step; ``log()`` alone) once for each tree, each in a fresh
process importing ml_dash from that tree, in alternating order.  The
machine is shared and noisy, so what is reported is the median of the
per-round ratios CHANGED / BASE, beside each side's median time: a slow
moment then slows both sides of a round alike.  A change to a hot path
quotes this output before it lands.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

BENCH = os.path.dirname(os.path.abspath(__file__))

# The workload functions come from this checkout's bench/core.py, so both
# trees run exactly the same loop; only the imported package differs.
CHILD = """
import json, shutil, sys, tempfile
sys.path.insert(0, {bench!r})
import core, ml_dash
assert ml_dash.__file__.startswith({src!r}), ml_dash.__file__
root = tempfile.mkdtemp(prefix="ml_dash-ab-")
try:
    out = {{
        "step + flush": core.ml_dash_steps(core.fresh(root, "a"), {steps}),
        "step, flush every 100": core.ml_dash_steps(core.fresh(root, "b"), {steps}, flush_every=100),
        "log() alone": core.ml_dash_log_only(core.fresh(root, "c"), {calls}),
    }}
finally:
    shutil.rmtree(root, ignore_errors=True)
print(json.dumps(out))
"""


def measure(src, steps, calls):
    """One round's figures (microseconds) for the tree at ``src``, in a new process."""
    src = os.path.realpath(src)
    code = CHILD.format(bench=BENCH, src=src, steps=steps, calls=calls)
    env = dict(os.environ, PYTHONPATH=src)
    # cwd outside both trees: the current directory would come first on sys.path.
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"measuring {src} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base", help="source tree to compare against (holds ml_dash/)")
    parser.add_argument("changed", nargs="?", default=os.path.dirname(BENCH),
                        help="source tree of the change (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    calls = min(args.steps, 50_000)  # below the auto-flush backlog, as in core.py
    sides = {"base": args.base, "changed": args.changed}
    figures = {side: [] for side in sides}
    for round_ in range(args.rounds):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for side in order:
            figures[side].append(measure(sides[side], args.steps, calls))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"base {os.path.realpath(args.base)}\nchanged {os.path.realpath(args.changed)}\n"
          f"{args.rounds} interleaved rounds, {args.steps} steps, log() alone {calls} calls")
    print(f"{'workload':24s} {'base us':>10s} {'changed us':>11s} {'median ratio':>13s} "
          f"{'ratio range':>15s}")
    for workload in figures["base"][0]:
        base = [r[workload] for r in figures["base"]]
        changed = [r[workload] for r in figures["changed"]]
        ratios = [c / b for b, c in zip(base, changed)]
        print(f"{workload:24s} {statistics.median(base):10.3f} {statistics.median(changed):11.3f} "
              f"{statistics.median(ratios):12.3f}x  {min(ratios):.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    main()
