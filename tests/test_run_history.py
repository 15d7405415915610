"""Run history and metadata: launches, the error of a failed run, tags changed after the end."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ml_dash import Experiment, WriterLockedError, annotate, list_experiments, load
from ml_dash import launches as launch_history

PREFIX = "alice/proj/exp"


def _launch(dash_root, fail=False, **options):
    with Experiment(prefix=PREFIX, dash_root=dash_root, **options).run as exp:
        exp.metrics.log(step=0)
        if fail:
            raise ValueError("loss is nan at step 0")


def _cli(*args, dash_root):
    return subprocess.run([sys.executable, "-m", "ml_dash", *args, "--dash-root", dash_root],
                          capture_output=True, text=True, timeout=120)


def test_each_launch_is_recorded_and_the_first_start_kept(dash_root):
    _launch(dash_root)
    first = load(PREFIX, dash_root=dash_root).info
    with pytest.raises(ValueError):
        _launch(dash_root, fail=True)
    _launch(dash_root)
    view = load(PREFIX, dash_root=dash_root)
    launches = view.launches
    assert [entry["status"] for entry in launches] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert all(entry["pid"] == os.getpid() and entry["host"] for entry in launches)
    assert all(entry["startedAt"] <= entry["endedAt"] for entry in launches)
    assert launches[1]["error"] == "ValueError: loss is nan at step 0"
    assert sys.argv[0] in launches[0]["command"]
    info = view.info
    assert info["startedAt"] == first["startedAt"] == launches[0]["startedAt"]
    assert info["endedAt"] == launches[2]["endedAt"] and info["launchCount"] == 3
    assert info.get("error") is None  # the last launch did not fail
    assert list_experiments(dash_root)[0]["launches"] == 3
    shown = _cli("show", PREFIX, dash_root=dash_root)
    assert "launches (3)" in shown.stdout and "ValueError: loss is nan" in shown.stdout
    assert "x3" in _cli("ls", dash_root=dash_root).stdout


def test_the_history_is_bounded_for_a_harness_that_relaunches(dash_root, monkeypatch):
    monkeypatch.setattr(launch_history, "MAX_LAUNCHES", 5)
    for _ in range(12):
        _launch(dash_root)
    view = load(PREFIX, dash_root=dash_root)
    assert len(view.launches) == 5 and view.info["launchCount"] == 12
    stored = len(json.dumps(view._record()))
    for _ in range(5):
        _launch(dash_root)
    assert len(json.dumps(view._record())) <= stored + 50  # does not grow


def test_a_killed_launch_is_marked_stale_by_the_next(dash_root):
    code = textwrap.dedent(f"""
        import os, ml_dash
        exp = ml_dash.Experiment(prefix={PREFIX!r}, dash_root={dash_root!r})
        exp.run.start()
        exp.metrics.log(step=1).flush()
        os._exit(9)
    """)
    subprocess.run([sys.executable, "-c", code], check=False, timeout=120)
    _launch(dash_root)
    launches = load(PREFIX, dash_root=dash_root).launches
    assert [entry["status"] for entry in launches] == ["STALE", "COMPLETED"]
    assert launches[0]["endedAt"] is None and launches[0]["pid"] != os.getpid()


def test_a_failed_run_records_its_exception(dash_root):
    with pytest.raises(ValueError):
        _launch(dash_root, fail=True)
    view = load(PREFIX, dash_root=dash_root)
    assert view.status == "FAILED"
    assert view.error["type"] == "ValueError"
    assert view.error["message"] == "loss is nan at step 0"
    assert "in _launch" in view.error["traceback"] and "raise ValueError" in view.error["traceback"]
    shown = _cli("show", PREFIX, dash_root=dash_root)
    assert "error: ValueError: loss is nan at step 0" in shown.stdout
    assert "raise ValueError" in shown.stdout


def test_fail_by_hand_in_an_except_block_records_the_exception(dash_root):
    exp = Experiment(prefix=PREFIX, dash_root=dash_root)
    exp.run.start()
    try:
        {}["missing"]
    except KeyError:
        exp.run.fail()
    assert load(PREFIX, dash_root=dash_root).error["type"] == "KeyError"


def test_a_script_ended_by_an_exception_records_it(dash_root):
    code = f"""
import ml_dash
exp = ml_dash.Experiment(prefix={PREFIX!r}, dash_root={dash_root!r})
exp.run.start()
raise RuntimeError("out of memory")
"""
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    view = load(PREFIX, dash_root=dash_root)
    assert view.status == "FAILED"  # closed by the exit handler, started by hand
    assert view.error["type"] == "RuntimeError" and view.error["message"] == "out of memory"


def test_tags_description_and_notes_change_without_reopening(dash_root):
    with pytest.raises(ValueError):
        _launch(dash_root, fail=True, tags=["draft", "lr"])
    before = load(PREFIX, dash_root=dash_root).info
    done = annotate(PREFIX, add_tags=["best"], remove_tags=["draft"], description="baseline",
                    notes="diverged at step 0", dash_root=dash_root)
    assert done == {"tags": ["lr", "best"], "description": "baseline", "notes": "diverged at step 0"}
    after = load(PREFIX, dash_root=dash_root).info
    for key in ("status", "startedAt", "endedAt", "launches", "launchCount", "error"):
        assert after[key] == before[key], key
    assert after["tags"] == ["lr", "best"] and after["notes"] == "diverged at step 0"
    assert _cli("tag", PREFIX, "+final", "-lr", dash_root=dash_root).returncode == 0
    assert _cli("describe", PREFIX, "the baseline", dash_root=dash_root).returncode == 0
    view = load(PREFIX, dash_root=dash_root)
    assert view.tags == ["best", "final"] and view.description == "the baseline"
    assert view.status == "FAILED"


def test_annotate_refuses_bad_values_and_missing_runs(dash_root):
    _launch(dash_root)
    with pytest.raises(TypeError, match="tags must be strings"):
        annotate(PREFIX, add_tags=[1], dash_root=dash_root)
    with pytest.raises(FileNotFoundError, match="did you mean alice/proj/exp"):
        annotate("alice/proj/exq", tags=["a"], dash_root=dash_root)
    assert not os.path.exists(os.path.join(dash_root, "alice", "proj", "exq"))
    done = _cli("tag", PREFIX, "best", dash_root=dash_root)
    assert done.returncode == 1 and "+TAG to add" in done.stderr
    done = _cli("tag", PREFIX, dash_root=dash_root)
    assert done.returncode == 1 and "no tags given" in done.stderr
    done = _cli("describe", "alice/proj/exq", "text", dash_root=dash_root)
    assert done.returncode == 1 and "did you mean alice/proj/exp" in done.stderr


def test_annotate_is_refused_while_another_process_writes_the_run(dash_root):
    code = textwrap.dedent(f"""
        import sys, ml_dash
        exp = ml_dash.Experiment(prefix={PREFIX!r}, dash_root={dash_root!r})
        exp.run.start()
        print("started", flush=True)
        sys.stdin.readline()
        exp.run.complete()
    """)
    writer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "started"
        with pytest.raises(WriterLockedError, match=f"while it is written.*{writer.pid}"):
            annotate(PREFIX, tags=["best"], dash_root=dash_root)
        assert load(PREFIX, dash_root=dash_root).status == "RUNNING"
    finally:
        writer.communicate("\n", timeout=60)
    annotate(PREFIX, tags=["best"], dash_root=dash_root)
    assert load(PREFIX, dash_root=dash_root).tags == ["best"]


def test_an_exception_that_cannot_be_printed_still_fails_the_run(dash_root):
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no text")

    with pytest.raises(Unprintable):
        with Experiment(prefix=PREFIX, dash_root=dash_root).run:
            raise Unprintable()
    view = load(PREFIX, dash_root=dash_root)
    assert view.status == "FAILED" and "Unprintable" in view.error["type"]
    assert "str() raised" in view.error["message"]


def test_annotate_names_the_argument_and_the_cli_prints_a_bad_word_on_one_line(dash_root):
    _launch(dash_root)
    with pytest.raises(TypeError, match=r"notes must be a str, got int"):
        annotate(PREFIX, notes=5, dash_root=dash_root)
    word = b"\xff".decode(errors="surrogateescape")  # a byte of argv that is not UTF-8
    done = subprocess.run([sys.executable, "-m", "ml_dash", "describe", PREFIX, word, "--dash-root", dash_root],
                          capture_output=True, text=True, timeout=120, errors="surrogateescape")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("ml-dash describe: error:") and "not valid UTF-8" in done.stderr
    assert load(PREFIX, dash_root=dash_root).description is None
