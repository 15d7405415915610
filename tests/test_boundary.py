"""The API boundary: every value either round-trips exactly or is refused clearly."""

import math

import numpy as np
import pytest

import ml_dash
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


def test_an_unencodable_string_is_refused_without_losing_the_snapshot(exp, dash_root):
    train = exp.metrics("train")
    train.log(step=0).flush()
    train.log(step=1)
    train.log(step=2, path="bad-\udcff-name")  # a lone surrogate, as from os.fsdecode
    exp.metrics("eval").log(step=2)
    with pytest.raises(TypeError, match="stream 'train'.*field 'path' \\(str\\).*surrogate.*dropped"):
        exp.flush()
    exp.flush()  # the rest of the snapshot was kept
    assert [row["data"]["step"] for row in train.read()["data"]] == [0, 1]
    assert len(exp.metrics("eval")) == 1
    with pytest.raises(ValueError, match="stream names must be valid UTF-8"):
        exp.metrics("\udcff")  # listings show every stream name: refused where it is given
    exp.metrics("t2").log(**{"\udcff": 1.0})
    with pytest.raises(TypeError, match="stream 't2'"):
        exp.flush()
    exp.run.complete()
    assert "\udcff" not in load("alice/proj/exp", dash_root=dash_root).metrics.names()
    assert ml_dash.check("alice/proj/exp", dash_root=dash_root).ok


def test_streams_past_the_limit_are_refused_at_the_call_and_everything_else_is_committed(exp, dash_root):
    from ml_dash.storage.writer import MAX_STREAMS

    exp.metrics("keep").log(x=0).flush()
    for i in range(MAX_STREAMS - 2):  # "keep" is the first of them
        exp.metrics(f"s{i}").log(x=i)
    exp.flush()
    exp.metrics("staged-last").log(x=1)  # the last place: staged, not yet committed, counts
    exp.metrics("keep").log(x=1)
    for i in range(50):
        with pytest.raises(ml_dash.StreamLimitError, match=f"stream 'over{i}'.*at most {MAX_STREAMS}"):
            exp.metrics(f"over{i}")
    with pytest.raises(ml_dash.StreamLimitError, match="stream 'routed'.*nothing of this call"):
        exp.metrics.log(epoch=1, keep=dict(x=9), routed=dict(x=2))  # routed dicts too, all or none
    exp.metrics("keep").log(x=2)
    exp.metrics.log(y=1)  # the root stream is not counted: it always has its place
    exp.flush()  # nothing refused was staged: the flush commits everything
    exp.params.set(lr=0.1)
    exp.log("still writable")
    exp.run.complete()
    view = load("alice/proj/exp", dash_root=dash_root)
    assert view.metrics("keep").column("x").tolist() == [0, 1, 2]
    assert view.metrics.column("y").tolist() == [1]
    assert len(view.metrics.list_all()) == MAX_STREAMS + 1
    assert view.status == "COMPLETED"
    assert ml_dash.check("alice/proj/exp", dash_root=dash_root).ok
    with ml_dash.Experiment(prefix="alice/proj/exp", dash_root=dash_root).run as again:
        with pytest.raises(ml_dash.StreamLimitError, match="stream 'new'"):
            again.metrics("new")  # counted from the store when the run is reopened
        again.metrics("keep").log(x=3)
    assert load("alice/proj/exp", dash_root=dash_root).metrics("keep").column("x").tolist() == [0, 1, 2, 3]
