"""Typos fail loudly with the close matches, instead of returning nothing."""

import warnings

import pytest

import ml_dash
from ml_dash import ColumnNotFoundError, Experiment, StreamNotFoundError, load


def _run(dash_root, prefix, streams=("train",)):
    with Experiment(prefix=prefix, dash_root=dash_root).run as exp:
        for name in streams:
            exp.metrics(name).log(loss=0.5, step=1)
        exp.metrics.log(epoch=1)


def test_a_view_of_an_ended_run_refuses_a_stream_it_lacks(dash_root):
    _run(dash_root, "alice/proj/exp")
    view = load("alice/proj/exp", dash_root=dash_root)
    stream = view.metrics("trian")  # taking the handle never raises
    for read in (len, lambda s: s.read(), lambda s: s.keys(), lambda s: s.stats(),
                 lambda s: s.columns(), lambda s: s.commit_times()):
        with pytest.raises(StreamNotFoundError, match="did you mean stream 'train'"):
            read(stream)
    assert len(view.metrics("train")) == 1 and view.metrics("train").read(5)["data"] == []
    assert len(view.metrics) == 1  # the root stream is always there


def test_a_view_of_a_live_run_reads_a_missing_stream_as_empty(dash_root):
    with Experiment(prefix="alice/proj/live", dash_root=dash_root).run as exp:
        exp.metrics("train").log(loss=1.0).flush()
        view = load("alice/proj/live", dash_root=dash_root)
        later = view.metrics("eval")  # a watcher started before the stream exists
        assert len(later) == 0 and later.read()["data"] == []
        exp.metrics("eval").log(loss=2.0).flush()
        assert len(later) == 1
        assert len(exp.metrics("never")) == 0  # the writer itself never raises


def test_export_refuses_a_stream_the_run_lacks(dash_root, tmp_path):
    _run(dash_root, "alice/proj/exp")
    out = tmp_path / "run.csv"
    with pytest.raises(StreamNotFoundError, match="stream 'trian' \\(did you mean stream 'train'"):
        ml_dash.export("alice/proj/exp", str(out), dash_root=dash_root, streams=["trian"])
    assert not out.exists()
    assert ml_dash.export("alice/proj/exp", str(out), dash_root=dash_root, streams=["train", None]) == 2


def test_runs_table_refuses_keys_streams_and_patterns_that_match_nothing(dash_root):
    _run(dash_root, "alice/proj/lr-1", ("train", "eval"))
    _run(dash_root, "alice/proj/lr-2")
    with pytest.raises(ColumnNotFoundError, match="'los' \\(did you mean 'loss'"):
        ml_dash.runs_table(dash_root=dash_root, keys=["los"], to="numpy")
    with pytest.raises(StreamNotFoundError, match="did you mean stream 'train'"):
        ml_dash.runs_table(dash_root=dash_root, streams=["trian"], to="numpy")
    with pytest.raises(FileNotFoundError, match="did you mean alice/proj/lr-"):
        ml_dash.runs_table("alice/proj/lr-3", dash_root=dash_root, to="numpy")
    with pytest.warns(RuntimeWarning, match="stream 'eval' is in 1 of 2 runs; not in alice/proj/lr-2"):
        table = ml_dash.runs_table(dash_root=dash_root, streams=["eval"], to="numpy")
    assert list(table["run"]) == ["alice/proj/lr-1"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = ml_dash.runs_table(dash_root=dash_root, streams=["train"], keys=["loss"], to="numpy")
    assert len(table["loss"]) == 2


def test_load_of_a_wrong_prefix_says_did_you_mean(dash_root):
    _run(dash_root, "alice/proj/lr-0.1")
    with pytest.raises(FileNotFoundError, match="did you mean alice/proj/lr-0.1"):
        load("alice/proj/lr-01", dash_root=dash_root)


def test_a_stale_run_reads_a_missing_stream_as_empty(dash_root):
    import subprocess
    import sys
    code = ("import os, ml_dash\n"
            f"exp = ml_dash.Experiment(prefix='alice/proj/killed', dash_root={dash_root!r})\n"
            "exp.run.start()\nexp.metrics('train').log(loss=1.0).flush()\nos._exit(9)\n")
    subprocess.run([sys.executable, "-c", code], timeout=120)
    view = load("alice/proj/killed", dash_root=dash_root)
    assert view.stale and len(view.metrics("eval")) == 0  # a requeued job may log it yet
