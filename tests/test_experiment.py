"""Experiment and run lifecycle (API.md 1)."""

import os

import pytest

from ml_dash import ConfigurationError, Experiment, RunNotStartedError, load, ml_dash_experiment


def test_prefix_parts_and_path(dash_root):
    exp = Experiment(prefix="/alice/proj/folder/exp/", dash_root=dash_root)
    assert (exp.owner, exp.project, exp.name) == ("alice", "proj", "exp")
    assert exp.prefix == "alice/proj/folder/exp"
    assert exp.path == os.path.join(os.path.realpath(dash_root), "alice", "proj", "folder", "exp")
    two = Experiment(prefix="alice/proj", dash_root=dash_root)
    assert two.name == "proj" and two.project == "proj"


@pytest.mark.parametrize("prefix", ["", "alice", "a//b", "a/./b", "a/../b", "a/b\\c", "a/b\x00", "../x/y"])
def test_bad_prefixes(dash_root, prefix):
    with pytest.raises(ValueError) as info:
        Experiment(prefix=prefix, dash_root=dash_root)
    assert repr(prefix) in str(info.value)


def test_unknown_keyword_and_dash_url(dash_root):
    with pytest.raises(TypeError):
        Experiment(prefix="a/b", dash_root=dash_root, colour="red")
    with pytest.raises(ConfigurationError) as info:
        Experiment(prefix="a/b", dash_root=dash_root, dash_url="http://example")
    assert "remote" in str(info.value)


def test_not_started_raises_runtime_error(dash_root):
    exp = Experiment(prefix="a/b", dash_root=dash_root)
    with pytest.raises(RuntimeError) as info:
        exp.metrics.log(x=1)
    assert "not started" in str(info.value)
    with pytest.raises(RunNotStartedError):
        exp.flush()


def test_context_manager_completes_and_persists(dash_root):
    with Experiment(prefix="a/b/c", dash_root=dash_root, description="d", tags=["x"],
                    metadata={"k": 1}).run as exp:
        assert exp.status == "RUNNING"
        exp.metrics("train").log(loss=1.0)  # no explicit flush: committed at exit
    assert exp.status == "COMPLETED"
    view = load("a/b/c", dash_root=dash_root)
    assert view.status == "COMPLETED" and view.description == "d" and view.tags == ["x"]
    assert view.metadata == {"k": 1} and len(view.metrics("train")) == 1
    info = view.info
    assert info["startedAt"] and info["endedAt"] and info["stale"] is False
    view.close()


def test_exception_marks_failed_and_reraises(dash_root):
    exp = Experiment(prefix="a/b", dash_root=dash_root)
    with pytest.raises(ZeroDivisionError):
        with exp.run:
            exp.metrics.log(x=1)
            1 / 0
    assert exp.status == "FAILED"
    assert len(load("a/b", dash_root=dash_root).metrics) == 1


def test_manual_lifecycle_and_reopen_appends(dash_root):
    exp = Experiment(prefix="a/b", dash_root=dash_root, readme="notes")
    exp.run.start()
    exp.run.start()  # no-op
    exp.metrics("s").log(i=0)
    exp.run.cancel()
    assert exp.status == "CANCELLED" and exp.description == "notes"
    exp.run.start()
    exp.metrics("s").log(i=1)
    exp.run.complete()
    again = Experiment(prefix="a/b", dash_root=dash_root)
    with again.run:
        again.metrics("s").log(i=2)
        assert again.description == "notes"
    assert [r["index"] for r in again.metrics("s").read()["data"]] == [0, 1, 2]
    assert [r["data"]["i"] for r in again.metrics("s").read()["data"]] == [0, 1, 2]


def test_run_decorators(dash_root):
    exp = Experiment(prefix="a/dec", dash_root=dash_root)

    @exp.run
    def train(experiment, steps):
        for i in range(steps):
            experiment.metrics.log(i=i)
        return "done"

    assert train(3) == "done" and exp.status == "COMPLETED"

    @ml_dash_experiment("a/dec2", dash_root=dash_root)
    def other(x, experiment=None):
        experiment.metrics.log(x=x)
        return experiment

    used = other(5)
    assert used.status == "COMPLETED" and len(load("a/dec2", dash_root=dash_root).metrics) == 1


def test_second_writer_is_refused_with_holder(dash_root):
    import subprocess
    import sys
    with Experiment(prefix="a/b", dash_root=dash_root).run:
        code = (f"import ml_dash\ntry:\n    ml_dash.Experiment(prefix='a/b', dash_root={dash_root!r}).run.start()\n"
                "except ml_dash.WriterLockedError as e:\n    print('locked:', e)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.startswith("locked:") and f"pid={os.getpid()}" in out.stdout


def test_view_and_writer_in_one_process(dash_root):
    with Experiment(prefix="a/b", dash_root=dash_root).run as exp:
        exp.metrics.log(x=1)
    view = load("a/b", dash_root=dash_root)
    with Experiment(prefix="a/b", dash_root=dash_root).run as exp:
        exp.metrics.log(x=2).flush()
        assert len(view.metrics) == 2
        assert len(load("a/b", dash_root=dash_root).metrics) == 2
    assert len(view.metrics) == 2 and view.status == "COMPLETED"


def test_reading_after_the_run_closed(dash_root):
    with Experiment(prefix="a/b", dash_root=dash_root).run as exp:
        exp.metrics("t").log(x=1)
    assert exp.metrics("t").read()["data"][0]["data"]["x"] == 1
