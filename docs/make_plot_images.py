"""Regenerate the pictures of ``ml_dash.plot`` in docs/images/.

    python docs/make_plot_images.py

A sweep of eight learning rates (synthetic, seeded: the same curves every time) is logged
into a temporary dash root and drawn the way docs/python-api.md shows, with times in UTC so
that the pictures do not depend on where they are made.
"""

import math
import os
import random
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import ml_dash  # noqa: E402

IMAGES = os.path.join(HERE, "images")
RATES = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001)


def log_sweep(dash_root, steps=5000):
    noise = random.Random(0)
    start = 1_796_000_000.0
    for rate in RATES:
        distance = math.log10(rate / 0.01)  # 0.01 learns fastest; larger rates level off higher
        speed = 1 / (1 + abs(distance))
        floor = 0.08 * (1 + 2 * distance if distance > 0 else 1 - 0.7 * distance)
        with ml_dash.Experiment(prefix=f"alice/sweep/lr-{rate:g}", dash_root=dash_root).run as exp:
            for step in range(steps):
                loss = 2.0 * math.exp(-step * speed / 900) + floor
                exp.metrics("train").log(loss=loss * math.exp(noise.gauss(0, 0.08)), step=step,
                                         _ts=start + step * 0.7)


def main():
    os.environ["TZ"] = "UTC"
    time.tzset()
    with tempfile.TemporaryDirectory() as dash_root:
        log_sweep(dash_root)
        for name, options in {
            "plot-compare.png": dict(compare="alice/sweep/*", smooth=0.9, log_y=True, x="step"),
            "plot-time.png": dict(x="_ts", smooth=0.6),
        }.items():
            path = os.path.join(IMAGES, name)
            ml_dash.plot("alice/sweep/lr-0.01", "train", "loss", path, dash_root=dash_root, **options)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
