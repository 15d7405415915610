"""The demo: log a synthetic training run, read it back, print what it took."""

import math
import random
import time

from .experiment import Experiment
from .view import load


def run_demo(steps=100_000, dash_root=None, prefix="demo/synthetic/run", out=print):
    """Log ``steps`` training steps (flush per step), then read them back."""
    rng = random.Random(0)
    experiment = Experiment(prefix=prefix, dash_root=dash_root,
                            description="synthetic training run from `python -m ml_dash demo`")
    with experiment.run as exp:
        train, evaluate, root = exp.metrics("train"), exp.metrics("eval"), exp.metrics
        first = len(train)
        start = time.perf_counter()
        for step in range(steps):
            loss = 2.0 * math.exp(-step / (steps / 5)) + 0.05 * rng.random()
            train.log(loss=loss, accuracy=1.0 - loss / 2.2)
            evaluate.log(loss=loss * 1.1, accuracy=1.0 - loss / 2.0)
            root.log(epoch=step // 1000, step=step).flush()
        elapsed = time.perf_counter() - start
    out(f"logged {steps:,} steps (3 points each, one flush per step) into "
        f"{experiment.path} in {elapsed:.2f} s: {elapsed / steps * 1e6:.1f} us per step, "
        f"{steps / elapsed:,.0f} steps/s")

    view = load(prefix, dash_root=dash_root)
    start = time.perf_counter()
    losses = view.metrics("train").column("loss")
    mean = float(losses[first:].mean())
    column_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    page = view.metrics("train").read(start_index=len(losses) - 5, limit=5)
    read_ms = (time.perf_counter() - start) * 1e3
    out(f"read back {len(losses):,} train points: column('loss') and its mean in {column_ms:.2f} ms "
        f"(mean {mean:.4f}); last 5 rows in {read_ms:.2f} ms; status {view.status}")
    out(f"{'index':>8}  {'loss':>8}  {'accuracy':>8}  createdAt")
    for row in page["data"]:
        out(f"{row['index']:>8}  {row['data']['loss']:8.4f}  {row['data']['accuracy']:8.4f}  "
            f"{row['createdAt']}")
    view.close()
    return elapsed
