"""One read suite, run on both sides: a live experiment and a ``load()`` view.

Both are built from the same classes (``Stream``, ``Metrics``, ``Params``,
``Logs``, ``Files``), so every read method must give the same answer
whichever owner it reads through; only writing differs (a view refuses).
"""

import numpy as np
import pytest

from ml_dash import ColumnNotFoundError, Experiment, ExperimentError, StreamNotFoundError, load

PREFIX = "alice/proj/reads"
STEPS = 50


@pytest.fixture(params=["live", "view"])
def run(request, dash_root):
    """The same committed run, read live (the run still open) or through a view."""
    exp = Experiment(prefix=PREFIX, dash_root=dash_root, description="read suite")
    exp.run.start()
    train = exp.metrics("train", description="training")
    for step in range(STEPS):
        train.log(step=step, loss=1.0 / (step + 1), note="n")
        exp.metrics.log(step=step, lr=0.1)
        exp.flush()
    exp.params.set(model=dict(lr=0.1, layers=[64, 64]), seed=1)
    exp.logs.info("started", epoch=0)
    exp.logs.error("oops")
    exp.flush()
    exp.files("cfg").save_text("a: 1", to="train.yaml")
    if request.param == "live":
        yield exp
        exp.run.complete()
    else:
        exp.run.complete()
        with load(PREFIX, dash_root=dash_root) as view:
            yield view


def test_points_pages_and_counts(run):
    train = run.metrics("train")
    assert len(train) == STEPS and len(run.metrics) == STEPS
    page = train.read(start_index=10, limit=5)
    assert [row["index"] for row in page["data"]] == list(range(10, 15))
    assert page["data"][0]["data"]["note"] == "n" and page["hasMore"] is True
    assert train.read(start_index=STEPS)["data"] == []


def test_columns_and_keys(run):
    train = run.metrics("train")
    assert set(train.keys()) == {"_ts", "step", "loss"}
    assert np.array_equal(train.column("step"), np.arange(STEPS))
    found = train.columns("step", "loss", start=5, stop=8)
    assert found["step"].tolist() == [5, 6, 7]
    assert train.column("loss", downsample=10).size <= 10


def test_missing_columns_and_streams_name_the_close_match(run):
    with pytest.raises(ColumnNotFoundError, match="did you mean 'loss'"):
        run.metrics("train").column("los")
    with pytest.raises(KeyError, match="did you mean stream 'train'"):
        run.metrics("trian").column("loss")
    with pytest.raises(StreamNotFoundError, match="stream 'nothing' has no committed points"):
        run.metrics("nothing").stats()


def test_stats_names_and_listing(run):
    stats = run.metrics("train").stats()
    assert stats["count"] == STEPS and stats["description"] == "training"
    assert sorted(stats["columns"]) == ["loss", "step"]
    assert sorted(run.metrics.names(), key=str) == [None, "train"]
    assert [s["name"] for s in run.metrics.list_all()] == [None, "train"]


def test_analysis_methods(run):
    train = run.metrics("train")
    assert train.index_range(10, 20, key="step") == (10, 20)
    between = train.between(10, 13, key="step")
    assert between["index"].tolist() == [10, 11, 12]
    x, y = train.downsample("loss", 10, x="step")
    assert len(x) == len(y) <= 10
    assert len(train.commit_times()) == STEPS


def test_params_logs_and_files(run):
    assert run.params.get() == {"model.layers": [64, 64], "model.lr": 0.1, "seed": 1}
    assert run.params.get(flatten=False)["model"]["lr"] == 0.1
    logs = run.logs.read()
    assert [r["message"] for r in logs["data"]] == ["started", "oops"]
    assert [r["message"] for r in run.logs.read(level="error")["data"]] == ["oops"]
    assert [r["filename"] for r in run.files.list()] == ["train.yaml"]
    assert run.files("cfg/train.yaml").read_text() == "a: 1"
    assert run.files("cfg").exists() and not run.files("other").exists()


def test_only_a_view_refuses_to_write(run):
    if isinstance(run, Experiment):
        run.metrics("train").log(step=STEPS).flush()
        assert len(run.metrics("train")) == STEPS + 1
        return
    for write in (lambda: run.metrics("train").log(step=1), lambda: run.metrics.flush(),
                  lambda: run.params.set(x=1), lambda: run.logs.info("x"),
                  lambda: run.files.save_text("x", to="x.txt"), lambda: run.files.delete()):
        with pytest.raises(ExperimentError, match="opened read-only"):
            write()
