"""Measurements taken inside a benchmark child process.

Standard library only: this module runs under every peer's own virtual
environment, where nothing of the project is installed.
"""

import json
import os
import random
import resource
import time

MARKER = "BENCH-RESULT "


def workload(step, steps):
    """The values logged at ``step``: (train loss, train accuracy, eval loss, eval accuracy, epoch).

    Deterministic, so a reader can check every value it gets back.
    """
    return 1.0 / (step + 1), step / steps, 2.0 / (step + 1), step / steps, step // 1000


def expected_train_loss(step):
    return 1.0 / (step + 1)


def close_enough(value, expected):
    """Peers storing float32 (TensorBoard) round; 1e-6 relative covers that."""
    return value is not None and abs(float(value) - expected) <= 1e-6 * abs(expected)


def peak_rss_mib():
    """Peak resident set size of this process and of its reaped children, MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(own, 1), round(children, 1)


def disk_bytes(path):
    """Bytes allocated on disk under ``path`` (sparse files count what they use)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def clock():
    return time.perf_counter()


def random_steps(steps, count, seed=1):
    rng = random.Random(seed)
    return [rng.randrange(steps) for _ in range(count)]


def emit(result):
    """Hand the result to the parent as one JSON line."""
    print(MARKER + json.dumps(result), flush=True)


def python_speed_ms(rounds=5):
    """Milliseconds of ``sum(range(10**6))``, the best of ``rounds``: how fast this machine
    runs Python, printed beside figures so that results from different machines compare
    (the same code measured 0.5 s on one 2-CPU machine and 0.8 s on another)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        sum(range(10**6))
        best = min(best, time.perf_counter() - started)
    return best * 1e3
