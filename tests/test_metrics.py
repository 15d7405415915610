"""The metrics contract (API.md 2.1-2.5) on a live experiment and on views."""

import math
import threading

import numpy as np
import pytest

import ml_dash
from ml_dash import ColumnNotFoundError, Experiment, StreamNotFoundError, load


def test_log_flush_read_page_shape(exp):
    for step in range(5):
        exp.metrics("train").log(loss=1.0 / (step + 1), accuracy=step / 10)
    exp.metrics("train").flush()
    page = exp.metrics("train").read(start_index=1, limit=2)
    assert set(page) == {"data", "startIndex", "endIndex", "total", "hasMore"}
    assert page["startIndex"] == 1 and page["endIndex"] == 2 and page["total"] == 2
    assert page["hasMore"] is True
    row = page["data"][0]
    assert row["index"] == 1
    assert row["data"]["loss"] == 0.5 and row["data"]["accuracy"] == 0.1
    assert isinstance(row["data"]["_ts"], float)
    assert row["createdAt"].endswith("Z") and "T" in row["createdAt"]
    last = exp.metrics("train").read(start_index=3, limit=10)
    assert [r["index"] for r in last["data"]] == [3, 4] and last["hasMore"] is False


def test_reads_see_only_flushed_points(exp):
    train = exp.metrics("train")
    train.log(loss=1.0)
    assert len(train) == 0
    assert train.read()["data"] == []
    train.flush()
    assert len(train) == 1


def test_empty_pages_and_bad_ranges(exp):
    page = exp.metrics("never").read()
    assert page == {"data": [], "startIndex": 0, "endIndex": -1, "total": 0, "hasMore": False}
    exp.metrics("train").log(loss=1.0).flush()
    assert exp.metrics("train").read(start_index=5)["endIndex"] == 4
    assert exp.metrics("train").read(limit=0)["data"] == []
    with pytest.raises(ValueError):
        exp.metrics("train").read(start_index=-1)
    with pytest.raises(ValueError):
        exp.metrics("train").read(limit=-1)


def test_stream_handles_are_cached_and_root_is_metrics(exp):
    assert exp.metrics("train") is exp.metrics("train")
    assert exp.metrics(None) is exp.metrics
    assert exp.metrics.log(epoch=1) is exp.metrics
    assert exp.metrics("a").log(x=1) is exp.metrics("a")


def test_nested_dicts_route_to_streams_with_one_ts(exp):
    exp.metrics.log(epoch=3, train=dict(loss=0.5, epoch=9), eval=dict(loss=0.7, deep=dict(x=1)))
    exp.flush()
    root = exp.metrics.read()["data"][0]["data"]
    train = exp.metrics("train").read()["data"][0]["data"]
    evaluation = exp.metrics("eval").read()["data"][0]["data"]
    assert root["epoch"] == 3 and "train" not in root
    assert train["epoch"] == 9 and train["loss"] == 0.5  # the dict wins on a clash
    assert evaluation["epoch"] == 3 and evaluation["deep"] == {"x": 1}
    assert root["_ts"] == train["_ts"] == evaluation["_ts"]
    assert exp.metrics("eval").column("deep.x")[0] == 1.0


def test_a_ts_inside_a_routed_dict_is_refused_and_nothing_of_the_call_is_staged(exp):
    exp.metrics("train").log(loss=1.0, _ts=10.0)
    with pytest.raises(TypeError, match="stream 'train'.*_ts"):
        exp.metrics.log(epoch=1, eval=dict(loss=0.2), train=dict(loss=0.5, _ts=5.0))
    exp.flush()
    assert len(exp.metrics) == 0 and len(exp.metrics("eval")) == 0
    assert exp.metrics("train").column("_ts").tolist() == [10.0]


def test_only_dicts_log_no_root_point(exp):
    exp.metrics.log(train=dict(loss=1.0))
    exp.flush()
    assert len(exp.metrics) == 0 and len(exp.metrics("train")) == 1


def test_ts_rules(exp):
    exp.metrics("a").log(x=1, _ts=1000.5)
    exp.metrics("b").log(x=2, _ts=-1)
    exp.flush()
    assert exp.metrics("a").read()["data"][0]["data"]["_ts"] == 1000.5
    assert exp.metrics("b").read()["data"][0]["data"]["_ts"] == 1000.5
    with pytest.raises(TypeError):
        exp.metrics("a").log(x=1, _ts="yesterday")


def test_ts_minus_one_without_history_is_a_configuration_error(dash_root):
    code = (
        "import ml_dash\n"
        f"e = ml_dash.Experiment(prefix='a/b', dash_root={dash_root!r}); e.run.start()\n"
        "try:\n    e.metrics.log(x=1, _ts=-1)\nexcept ml_dash.ConfigurationError as exc:\n"
        "    print('refused', exc)\n"
    )
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("refused")


def test_values_round_trip(exp):
    value = {
        "i": 3, "f": 0.25, "b": True, "s": "text", "n": None, "nan": math.nan, "inf": -math.inf,
        "big": 2 ** 80, "l": [1, "a", [2.5]], "d": {"x": {"y": 1}},
    }
    exp.metrics("v").log(**value).flush()
    stored = exp.metrics("v").read()["data"][0]["data"]
    assert stored["i"] == 3 and type(stored["i"]) is int
    assert stored["b"] is True and stored["s"] == "text" and stored["n"] is None
    assert math.isnan(stored["nan"]) and stored["inf"] == -math.inf
    assert stored["big"] == 2 ** 80 and stored["l"] == [1, "a", [2.5]]
    assert stored["d"] == {"x": {"y": 1}}
    assert set(exp.metrics("v").keys()) == {"_ts", "i", "f", "b", "nan", "inf", "big", "d.x.y"}


def test_numpy_values_are_converted(exp):
    exp.metrics("np").log(a=np.float32(0.5), b=np.int64(7), c=np.array(2.5), d=np.bool_(True))
    exp.flush()
    data = exp.metrics("np").read()["data"][0]["data"]
    assert data["a"] == 0.5 and type(data["a"]) is float
    assert data["b"] == 7 and type(data["b"]) is int
    assert data["c"] == 2.5 and data["d"] is True


class Opaque:
    pass


@pytest.mark.parametrize("bad", [Opaque(), b"bytes", {1, 2}, np.zeros(3), object])
def test_bad_values_are_rejected_with_nothing_staged(exp, bad):
    exp.metrics("train").log(loss=1.0).flush()
    with pytest.raises(TypeError) as info:
        exp.metrics("train").log(loss=2.0, weird=bad)
    assert "weird" in str(info.value) and "'train'" in str(info.value)
    assert type(bad).__name__ in str(info.value)
    exp.flush()
    assert len(exp.metrics("train")) == 1
    assert exp.metrics("train").read()["data"][0]["data"]["loss"] == 1.0


def test_bad_keys_are_rejected(exp):
    with pytest.raises(TypeError):
        exp.metrics("a").log(**{"": 1})
    with pytest.raises(TypeError):
        exp.metrics("a").log(d={1: 2})
    with pytest.raises(ValueError):
        exp.metrics("")
    exp.flush()
    assert len(exp.metrics("a")) == 0


def test_flush_is_one_snapshot_across_streams(exp):
    for name in ("a", "b", "c"):
        exp.metrics(name).log(x=1)
    exp.metrics("a").flush()
    assert [len(exp.metrics(n)) for n in "abc"] == [1, 1, 1]


def test_log_flush_keyword(exp):
    exp.metrics("a").log(x=1, _flush=True)
    assert len(exp.metrics("a")) == 1


def test_columns(exp):
    for i in range(10):
        fields = {"loss": i * 0.5, "label": "x"}
        if i % 2:
            fields["acc"] = i
        exp.metrics("train").log(**fields)
    exp.flush()
    stream = exp.metrics("train")
    loss = stream.column("loss")
    assert loss.dtype == np.float64 and not loss.flags.writeable
    assert np.array_equal(loss, np.arange(10) * 0.5)
    acc = stream.column("acc")
    assert np.isnan(acc[0::2]).all() and np.array_equal(acc[1::2], [1, 3, 5, 7, 9])
    assert np.array_equal(stream.column("loss", start=2, stop=4), [1.0, 1.5])
    cols = stream.columns()
    assert set(cols) == {"_ts", "loss", "acc"}
    assert set(stream.columns("loss")) == {"loss"}
    assert len(stream) == 10
    with pytest.raises(ColumnNotFoundError) as info:
        stream.column("label")
    assert "label" in str(info.value) and "loss" in str(info.value)
    with pytest.raises(KeyError):
        stream.column("nope")


def test_column_type_change_gives_nan(exp):
    exp.metrics("t").log(v=1.0)
    exp.metrics("t").log(v="text")
    exp.metrics("t").log(v=3)
    exp.flush()
    column = exp.metrics("t").column("v")
    assert column[0] == 1.0 and math.isnan(column[1]) and column[2] == 3.0


def test_columns_grow_past_initial_capacity(exp):
    stream = exp.metrics("long")
    for i in range(10_000):
        stream.log(i=i)
        if i % 997 == 0:
            stream.flush()
    stream.flush()
    assert np.array_equal(stream.column("i"), np.arange(10_000))


def test_stats_and_list_all(exp):
    exp.metrics("train", description="training", tags=["t"], metadata={"k": 1})
    exp.metrics("train", description="ignored: kept from the first call")
    with pytest.raises(StreamNotFoundError):
        exp.metrics("train").stats()
    with pytest.raises(KeyError):
        exp.metrics("train").stats()
    exp.metrics("train").log(loss=1.0, _ts=100.0)
    exp.metrics("train").log(loss=0.5, _ts=200.0)
    exp.metrics.log(epoch=1)
    exp.flush()
    stats = exp.metrics("train").stats()
    assert stats["name"] == "train" and stats["description"] == "training"
    assert stats["tags"] == ["t"] and stats["metadata"] == {"k": 1}
    assert stats["totalDataPoints"] == "2" and stats["count"] == 2
    assert stats["firstDataAt"].startswith("1970-01-01T00:01:40")
    assert stats["lastDataAt"].startswith("1970-01-01T00:03:20")
    assert stats["columns"] == ["loss"]
    ids = [s["metricId"] for s in exp.metrics.list_all()]
    assert len(set(ids)) == 2 and all(isinstance(i, str) for i in ids) and stats["metricId"] == ids[1]
    names = [s["name"] for s in exp.metrics.list_all()]
    assert names == [None, "train"]
    # On any stream too, as in the reference package; a stream never written is not listed.
    assert exp.metrics("eval").list_all() == exp.metrics("train").list_all() == exp.metrics.list_all()
    assert exp.metrics.list_all()[1] == stats
    exp.run.complete()
    with load(exp.prefix, dash_root=exp.dash_root) as view:
        assert [s["name"] for s in view.metrics("train").list_all()] == [None, "train"]


def test_a_stream_answers_to_the_reference_packages_attribute_name(exp):
    stream = exp.metrics("train").buffer(loss=0.5).buffer(loss=0.4)
    assert stream._name == stream.name == "train"
    assert exp.metrics._name is None
    exp.metrics.buffer.log_summary()
    exp.flush()
    assert stream.read()["data"][0]["data"]["loss.mean"] == pytest.approx(0.45)


def test_stream_names_of_any_kind(exp):
    names = ["a/b", "ünï", "x" * 2000, "s:1", "meta", "catalog", "_ts"]
    for i, name in enumerate(names):
        exp.metrics(name).log(i=i)
    exp.flush()
    for i, name in enumerate(names):
        assert exp.metrics(name).read()["data"][0]["data"]["i"] == i
    assert not any(os.sep + "a" + os.sep + "b" in p for p in _walk(exp.path))


def _walk(path):
    import os as _os
    return [_os.path.join(d, f) for d, _, files in _os.walk(path) for f in files]


import os  # noqa: E402  (used above)


def test_many_streams(exp):
    for i in range(300):
        exp.metrics(f"s{i}").log(v=i)
    exp.flush()
    assert len(exp.metrics.list_all()) == 300
    assert exp.metrics("s299").column("v")[0] == 299


def test_threads_logging_at_once(exp):
    def work(t):
        stream = exp.metrics(f"t{t % 2}")
        for i in range(2000):
            stream.log(thread=t, i=i)
            if i % 100 == 0:
                exp.flush()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    exp.flush()
    seen = set()
    for name in ("t0", "t1"):
        page = exp.metrics(name).read(limit=10_000)
        assert [r["index"] for r in page["data"]] == list(range(4000))
        seen |= {(r["data"]["thread"], r["data"]["i"]) for r in page["data"]}
    assert seen == {(t, i) for t in range(4) for i in range(2000)}


def test_view_reads_what_the_writer_flushed(exp, dash_root):
    exp.metrics("train").log(loss=1.0).flush()
    exp.metrics("train").log(loss=2.0)
    view = load("alice/proj/exp", dash_root=dash_root)
    assert len(view.metrics("train")) == 1
    exp.flush()
    assert len(view.metrics("train")) == 2
    assert list(view.metrics("train").column("loss")) == [1.0, 2.0]
    assert view.status == "RUNNING" and view.stale is False
    assert [s["name"] for s in view.metrics.list_all()] == ["train"]
    view.close()


def test_a_view_follows_points_and_columns_committed_after_its_first_reads(exp, dash_root):
    train = exp.metrics("train")
    for i in range(3):
        train.log(loss=float(i))
    exp.flush()
    view = load("alice/proj/exp", dash_root=dash_root).metrics("train")
    assert [view.column("loss", k, k + 1)[0] for k in range(3)] == [0.0, 1.0, 2.0]
    assert view.column("loss", 3, 4).tolist() == []  # not committed yet
    train.log(loss=3.0, acc=0.5)
    train.log(loss=4.0, acc=0.6)
    assert view.column("loss", 3, 5).tolist() == []  # staged only
    exp.flush()
    assert view.column("loss", 3, 5).tolist() == [3.0, 4.0]
    assert view.column("loss", 1, 5).tolist() == [1.0, 2.0, 3.0, 4.0]
    assert view.column("acc", 4, 5).tolist() == [0.6]  # a column added after the first reads
    assert view.column("loss").tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ColumnNotFoundError):
        view.column("nope", 0, 1)


def test_load_missing_experiment(dash_root):
    with pytest.raises(FileNotFoundError) as info:
        load("nobody/nothing", dash_root=dash_root)
    assert "nobody/nothing" in str(info.value)


def test_backlog_threshold_commits_automatically(dash_root, monkeypatch):
    monkeypatch.setattr(ml_dash.session, "MAX_BACKLOG", 50)
    with Experiment(prefix="a/b", dash_root=dash_root).run as exp:
        for i in range(120):
            exp.metrics("x").log(i=i)
        assert len(exp.metrics("x")) == 100


def test_buffer_disabled_commits_every_log_as_it_is_called(dash_root, monkeypatch):
    """ML_DASH_BUFFER_ENABLED=false (the switch of scripts written for the public ml-dash
    package): each log() is its own snapshot, seen at once by the run and by a view."""
    monkeypatch.setenv("ML_DASH_BUFFER_ENABLED", "false")
    with Experiment(prefix="a/b/write-through", dash_root=dash_root).run as exp:
        for step in range(5):
            exp.metrics("train").log(loss=step / 10, step=step)
        exp.metrics.log(epoch=1, eval=dict(loss=0.5))
        assert len(exp.metrics("train")) == 5
        assert exp.metrics("train").read(start_index=3, limit=10)["data"][0]["data"]["step"] == 3
        with load("a/b/write-through", dash_root=dash_root) as view:
            assert len(view.metrics("train")) == 5 and len(view.metrics("eval")) == 1
            assert len(view.metrics) == 1
        commits = exp.metrics("train").commit_times()
        assert len(set(commits.tolist())) >= 1 and len(commits) == 5


def test_buffer_enabled_by_default_and_bad_switch_refused_at_start(dash_root, monkeypatch):
    with Experiment(prefix="a/b/buffered", dash_root=dash_root).run as exp:
        exp.metrics("train").log(loss=1.0)
        assert len(exp.metrics("train")) == 0  # staged, not committed
    monkeypatch.setenv("ML_DASH_BUFFER_ENABLED", "maybe")
    with pytest.raises(ml_dash.ConfigurationError, match="ML_DASH_BUFFER_ENABLED='maybe'"):
        Experiment(prefix="a/b/bad-switch", dash_root=dash_root).run.start()
    monkeypatch.setenv("ML_DASH_BUFFER_ENABLED", "true")
    with Experiment(prefix="a/b/bad-switch", dash_root=dash_root).run as exp:
        exp.metrics("train").log(loss=1.0)
        assert len(exp.metrics("train")) == 0
