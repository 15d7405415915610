"""Where a run comes from, recorded at its start; and what a failed run records of its exception."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from ml_dash import RUN, ConfigurationError, Experiment, load

SCRIPT = """
import sys
from ml_dash import Experiment
with Experiment("a/ctx/run", dash_root=sys.argv[1]).run as exp:
    exp.metrics("train").log(loss=0.5)
"""

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _repository(folder):
    """A repository with one commit of train.py and of a tracked notes file."""
    folder.mkdir()
    _git(folder, "init", "-q", "-b", "trial")
    _git(folder, "config", "user.email", "a@example.com")
    _git(folder, "config", "user.name", "A")
    (folder / "train.py").write_text(SCRIPT)
    (folder / "notes.txt").write_text("first\n")
    _git(folder, "add", ".")
    _git(folder, "commit", "-q", "-m", "first")
    return _git(folder, "rev-parse", "HEAD")


def _run(script, dash_root, *args, env=None, cwd=None):
    done = subprocess.run([sys.executable, str(script), dash_root, *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    with load("a/ctx/run", dash_root=dash_root) as view:
        return view.info


@needs_git
def test_a_script_in_a_repository_records_its_commit_branch_and_dirty_state(tmp_path, dash_root):
    commit = _repository(tmp_path / "repo")
    (tmp_path / "repo" / "notes.txt").write_text("changed\n")  # a tracked file changed: dirty
    info = _run(tmp_path / "repo" / "train.py", dash_root, "--lr", "0.1", cwd=tmp_path)
    context = info["context"]
    assert context["git"] == {"commit": commit, "branch": "trial", "dirty": True}
    assert context["command"] == [str(tmp_path / "repo" / "train.py"), dash_root, "--lr", "0.1"]
    assert context["cwd"] == str(tmp_path)
    assert context["python"] == ".".join(map(str, sys.version_info[:3]))
    assert context["executable"] == sys.executable
    assert context["ml_dash"] and context["packages"]["numpy"]
    assert "torch" not in context["packages"]  # not imported by the script: not imported for it
    assert context["pid"] > 0 and context["hostname"]
    assert info["launches"][-1]["commit"] == commit[:12] + "+dirty"


@needs_git
def test_a_clean_repository_is_not_dirty_and_untracked_files_do_not_count(tmp_path, dash_root):
    commit = _repository(tmp_path / "repo")
    (tmp_path / "repo" / "output.log").write_text("untracked\n")
    info = _run(tmp_path / "repo" / "train.py", dash_root)
    assert info["context"]["git"] == {"commit": commit, "branch": "trial", "dirty": False}
    assert info["launches"][-1]["commit"] == commit[:12]


@needs_git
def test_a_detached_head_has_no_branch(tmp_path, dash_root):
    commit = _repository(tmp_path / "repo")
    _git(tmp_path / "repo", "checkout", "-q", "--detach")
    assert _run(tmp_path / "repo" / "train.py", dash_root)["context"]["git"]["branch"] is None
    assert _run(tmp_path / "repo" / "train.py", dash_root)["context"]["git"]["commit"] == commit


def test_a_script_outside_any_repository_has_no_git(tmp_path, dash_root):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text(SCRIPT)
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path))  # whatever holds tmp_path
    info = _run(folder / "train.py", dash_root, env=env)
    assert info["status"] == "COMPLETED"
    assert "git" not in info["context"] and info["context"]["python"]
    assert "commit" not in info["launches"][-1]


@needs_git
def test_without_git_on_the_path_the_run_starts_as_usual(tmp_path, dash_root):
    _repository(tmp_path / "repo")
    env = dict(os.environ, PATH=str(tmp_path / "nowhere"))
    info = _run(tmp_path / "repo" / "train.py", dash_root, env=env)
    assert info["status"] == "COMPLETED" and "git" not in info["context"]


def test_context_can_be_turned_off(dash_root, monkeypatch):
    with Experiment("a/ctx/run", dash_root=dash_root).run:
        pass
    with Experiment("a/ctx/run", dash_root=dash_root, context=False).run:
        pass  # a launch without it drops the earlier launch's context
    with load("a/ctx/run", dash_root=dash_root) as view:
        assert "context" not in view.info
    monkeypatch.setattr(RUN, "context", False)
    with Experiment("a/ctx/other", dash_root=dash_root).run:
        pass
    with load("a/ctx/other", dash_root=dash_root) as view:
        assert "context" not in view.info
    with pytest.raises(ConfigurationError, match="context must be True or False, got str 'no'"):
        Experiment("a/ctx/bad", dash_root=dash_root, context="no")


def test_context_is_not_in_the_params(dash_root):
    with Experiment("a/ctx/params", dash_root=dash_root).run as exp:
        exp.params.set(lr=0.1)
        assert exp.params.get() == {"lr": 0.1}


@needs_git
def test_show_prints_the_context(tmp_path, dash_root):
    commit = _repository(tmp_path / "repo")
    _run(tmp_path / "repo" / "train.py", dash_root)
    done = subprocess.run([sys.executable, "-m", "ml_dash", "show", "a/ctx/run", "--dash-root", dash_root],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"git: {commit} (trial)" in done.stdout
    assert f"python: {'.'.join(map(str, sys.version_info[:3]))}" in done.stdout


FAILING = """
import sys
from ml_dash import Experiment

def train():
    raise ValueError("loss is nan at step 7")

with Experiment("a/ctx/run", dash_root=sys.argv[1]).run:
    train()
"""


def test_a_failed_run_records_its_exception_in_the_record_and_the_logs(tmp_path, dash_root):
    script = tmp_path / "failing.py"
    script.write_text(textwrap.dedent(FAILING))
    done = subprocess.run([sys.executable, str(script), dash_root], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("ValueError: loss is nan at step 7") == 1  # Python's traceback, not a second copy
    with load("a/ctx/run", dash_root=dash_root) as view:
        error = view.info["error"]
        errors = view.logs.read(level="error")["data"]
        assert view.status == "FAILED"
    assert error["type"] == "ValueError" and error["message"] == "loss is nan at step 7"
    assert 'in train\n    raise ValueError("loss is nan at step 7")' in error["traceback"]
    assert [e["message"] for e in errors] == ["ValueError: loss is nan at step 7"]
    assert errors[0]["metadata"]["traceback"] == error["traceback"]
    shown = subprocess.run([sys.executable, "-m", "ml_dash", "show", "a/ctx/run", "--dash-root", dash_root],
                           capture_output=True, text=True, timeout=60).stdout
    assert "error: ValueError: loss is nan at step 7" in shown and "in train" in shown
    listed = subprocess.run([sys.executable, "-m", "ml_dash", "ls", "--dash-root", dash_root],
                            capture_output=True, text=True, timeout=60).stdout
    assert "a/ctx/run  FAILED (ValueError)" in listed


@needs_git
def test_the_dashboard_gives_the_context_and_the_error(tmp_path, dash_root):
    pytest.importorskip("starlette")
    pytest.importorskip("yaml")
    from starlette.testclient import TestClient

    from ml_dash.dashboard.app import create_app
    commit = _repository(tmp_path / "repo")
    script = tmp_path / "repo" / "failing.py"
    script.write_text(textwrap.dedent(FAILING))
    subprocess.run([sys.executable, str(script), dash_root], capture_output=True, timeout=60)
    client = TestClient(create_app(dash_root), base_url="http://127.0.0.1")
    body = client.get("/api/run", params={"prefix": "a/ctx/run"}).json()
    assert body["context"]["git"] == {"commit": commit, "branch": "trial", "dirty": False}
    assert body["error"]["type"] == "ValueError" and "in train" in body["error"]["traceback"]


def test_a_git_that_hangs_delays_the_start_by_the_timeout_only(tmp_path, dash_root):
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    hanging = bin_folder / "git"
    hanging.write_text("#!/bin/sh\nsleep 30\n")
    hanging.chmod(0o755)
    (tmp_path / "train.py").write_text(SCRIPT)
    env = dict(os.environ, PATH=f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    script = "import time, runpy, sys; t = time.monotonic(); sys.argv[:] = sys.argv[1:]; " \
             "runpy.run_path(sys.argv[0], run_name='__main__'); " \
             "print(time.monotonic() - t)"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "train.py"), dash_root],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 10  # GIT_TIMEOUT (2 s) and the run, not git's 30 s
    with load("a/ctx/run", dash_root=dash_root) as view:
        assert view.status == "COMPLETED" and "git" not in view.info["context"]


def test_arguments_that_are_not_utf8_are_stored_readably(tmp_path, dash_root):
    (tmp_path / "train.py").write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(tmp_path / "train.py"), dash_root, b"--name=caf\xe9"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with load("a/ctx/run", dash_root=dash_root) as view:
        assert view.info["context"]["command"][-1] == "--name=caf\ufffd"


@needs_git
def test_each_launch_records_its_commit_and_show_lists_them(tmp_path, dash_root):
    first = _repository(tmp_path / "repo")
    _run(tmp_path / "repo" / "train.py", dash_root)
    (tmp_path / "repo" / "notes.txt").write_text("second\n")
    _git(tmp_path / "repo", "commit", "-q", "-am", "second")
    second = _git(tmp_path / "repo", "rev-parse", "HEAD")
    info = _run(tmp_path / "repo" / "train.py", dash_root)
    assert [launch["commit"] for launch in info["launches"]] == [first[:12], second[:12]]
    assert info["context"]["git"]["commit"] == second  # the latest launch's
    shown = subprocess.run([sys.executable, "-m", "ml_dash", "show", "a/ctx/run", "--dash-root", dash_root],
                           capture_output=True, text=True, timeout=60).stdout
    header = next(line for line in shown.splitlines() if line.startswith("STARTED"))
    assert header.split() == ["STARTED", "ENDED", "STATUS", "PID", "HOST", "COMMIT", "COMMAND", "ERROR"]
    assert first[:12] in shown and second[:12] in shown


def test_a_huge_command_line_is_stored_cut_with_the_count_of_what_was_left_out(tmp_path, dash_root):
    # A shell glob of a data set as arguments (1.5 MB here, near Linux's limit) was stored
    # whole, at the start and again at the end of the run, and read by every listing.
    (tmp_path / "train.py").write_text(SCRIPT)
    files = [f"data/{n:06d}/" + "x" * 1500 for n in range(1000)]
    done = subprocess.run([sys.executable, str(tmp_path / "train.py"), dash_root, *files],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with load("a/ctx/run", dash_root=dash_root) as view:
        command = view.info["context"]["command"]
    assert command[:3] == [str(tmp_path / "train.py"), dash_root, files[0][:1000]]
    assert sum(map(len, command)) < 20_000
    kept = len(command) - 3  # the script, dash_root and the marker
    assert command[-1] == f"... ({len(files) - kept} more arguments)"
