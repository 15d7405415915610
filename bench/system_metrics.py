"""What the system stream and the run context cost a training loop.

    python bench/system_metrics.py            # full: about 2 minutes
    python bench/system_metrics.py --quick    # smoke run

1. The loop: per step ``metrics("train").log(loss, accuracy)`` and
   ``metrics.log(step=...).flush()`` (one commit per step, the heaviest
   common loop), for a fixed time per round, without the sampler, with it
   every 5 s (the default) and every 0.1 s, and without it a second time
   (so the ratio of the two runs without it shows the noise).  The variants run interleaved,
   in a shuffled order in each round, each in a fresh run; the figure is the
   median over rounds of the per-round ratio of microseconds per step to the
   loop without the sampler.  The 0.1 s sampler is measured in many rounds
   of 1 s; the 5 s one needs rounds longer than 5 s to sample at all during
   them, so fewer of them fit: its cost is below what they can resolve, and
   is that of the 0.1 s sampler divided by 50 (it samples 50 times less).
2. One sample: the probes' reads, timed alone (what the sampler thread
   takes from the loop's process every interval, GIL included).
3. The run context: ``run_context.collect`` the first time in a process
   (it runs git) and then (kept), and a run's start plus close with the
   context on and off, interleaved.

Figures are medians; the machine is shared and noisy, so read ratios.
"""

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psutil  # noqa: E402

from ml_dash import Experiment, run_context, system_metrics  # noqa: E402

# "off, again" is the loop without the sampler a second time: its ratio to "off" is the noise.
SHORT = {"off": None, "off, again": None, "every 0.1 s": 0.1}
LONG = {"off": None, "off, again": None, "every 5 s": 5.0}


def loop(root, name, interval, seconds):
    """Microseconds per step of the loop during ``seconds`` (wall, and the loop thread's own
    CPU time, which the load of other processes does not inflate), and the samples taken."""
    with Experiment(f"bench/system/{name}", dash_root=root, system_metrics=interval or False,
                    context=False).run as exp:
        train, metrics = exp.metrics("train"), exp.metrics
        steps = 0
        cpu = time.thread_time()
        start = time.perf_counter()
        until = start + seconds
        while True:
            for _ in range(100):
                train.log(loss=1.0 / (steps + 1), accuracy=0.5)
                metrics.log(step=steps).flush()
                steps += 1
            now = time.perf_counter()
            if now >= until:
                break
        elapsed = now - start
        cpu = time.thread_time() - cpu
    samples = len(exp.metrics("system")) if interval else 0  # the last one taken at the close
    return elapsed / steps * 1e6, cpu / steps * 1e6, samples


def rounds(root, variants, count, seconds):
    """``{variant: (us per step, ratio to "off", samples, CPU us per step)}`` lists over
    ``count`` rounds, each running the variants once, in a shuffled order."""
    out: dict = {name: ([], [], [], []) for name in variants}
    loop(root, f"warm-{seconds}", 0.1, 0.2)  # the first sampler imports pynvml and primes psutil
    for index in range(count):
        order = list(variants)
        random.shuffle(order)
        this = {}
        for name in order:
            us, cpu, taken = loop(root, f"{seconds}-{index}-{name.replace(' ', '-').replace(',', '')}",
                             variants[name], seconds)
            this[name] = us
            out[name][0].append(us)
            out[name][2].append(taken)
            out[name][3].append(cpu)
        for name in variants:
            out[name][1].append(this[name] / this["off"])
    return out


def table(title, results):
    print(title)
    print("| sampler | us/step (median) | us/step (min) | ratio to off (median of rounds) | ratios (min-max) "
          "| loop thread's CPU us/step (median) | samples per round |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (per_step, ratios, samples, cpu) in results.items():
        print(f"| {name} | {statistics.median(per_step):.1f} | {min(per_step):.1f} | "
              f"{statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} | "
              f"{statistics.median(cpu):.1f} | {statistics.median(samples):.0f} |")


def one_sample(repeats):
    """Microseconds of one sample's reads (the probes of this machine)."""
    probes = system_metrics._probes(psutil)
    point: dict = {}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for probe in probes:
            probe.read(point, 1.0)
        times.append((time.perf_counter() - start) * 1e6)
    for probe in probes:
        probe.close()
    return statistics.median(times), sorted(point)


def context_costs(root, repeats):
    folder = os.path.dirname(os.path.abspath(__file__))
    first = []
    for _ in range(repeats):
        run_context._git_states.clear()  # as in a new process
        start = time.perf_counter()
        run_context.collect(folder)
        first.append((time.perf_counter() - start) * 1e3)
    start = time.perf_counter()
    for _ in range(repeats):
        run_context.collect(folder)
    kept = (time.perf_counter() - start) / repeats * 1e3
    runs: dict = {True: [], False: []}
    for index in range(repeats):
        for context in random.sample([True, False], 2):
            start = time.perf_counter()
            with Experiment(f"bench/context/{index}-{context}", dash_root=root, context=context).run:
                pass
            runs[context].append((time.perf_counter() - start) * 1e3)
    return statistics.median(first), kept, statistics.median(runs[True]), statistics.median(runs[False])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: short rounds")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of 1 s (the 0.1 s sampler)")
    parser.add_argument("--long-rounds", type=int, default=None, help="rounds of 6 s (the 5 s sampler)")
    args = parser.parse_args()
    short_rounds = args.rounds or (2 if args.quick else 20)
    long_rounds = args.long_rounds or (1 if args.quick else 4)
    short_s, long_s = (0.2, 0.3) if args.quick else (1.0, 6.0)
    root = tempfile.mkdtemp(prefix="ml_dash-bench-system-")
    try:
        short = rounds(root, SHORT, short_rounds, short_s)
        long = rounds(root, LONG, long_rounds, long_s)
        sample_us, columns = one_sample(20 if args.quick else 500)
        first_ms, kept_ms, with_ms, without_ms = context_costs(root, 5 if args.quick else 50)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    what = "per step: log + log + flush; variants interleaved, shuffled in each round"
    table(f"{short_rounds} rounds of {short_s:g} s per variant; {what}", short)
    print()
    table(f"{long_rounds} rounds of {long_s:g} s per variant; {what}", long)
    print(f"\none sample: {sample_us:.0f} us (median) for {len(columns)} columns "
          f"({sample_us / 5e6 * 100:.4f}% of a core at 5 s, {sample_us / 1e5 * 100:.2f}% at 0.1 s)")
    print(f"run context: first collect {first_ms:.2f} ms (runs git), then {kept_ms * 1e3:.0f} us (kept); "
          f"a run's start + close: {with_ms:.2f} ms with it, {without_ms:.2f} ms without (medians)")


if __name__ == "__main__":
    main()
