"""The API boundary: every value either round-trips exactly or is refused clearly."""

import math

import numpy as np

from ml_dash import load


def test_ints_beyond_float64_are_stored_exactly_and_clamped_in_columns(exp, dash_root):
    train = exp.metrics("train")
    huge = 10 ** 400
    train.log(x=huge, y=-huge).flush()  # first point: the slow column path
    train.log(x=1, y=2).flush()
    train.log(x=huge, y=-huge).flush()  # same shape as the last: the fast path
    rows = [row["data"] for row in train.read()["data"]]
    assert [(r["x"], r["y"]) for r in rows] == [(huge, -huge), (1, 2), (huge, -huge)]
    assert list(train.column("x")) == [math.inf, 1.0, math.inf]
    assert list(train.column("y")) == [-math.inf, 2.0, -math.inf]
    exp.run.complete()
    assert np.array_equal(load("alice/proj/exp", dash_root=dash_root).metrics("train").column("x"),
                          [math.inf, 1.0, math.inf])
