"""A run's life around its process: forked children, a deleted lock file,
commits on a timer, SIGTERM, a second Experiment of the same prefix."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import ml_dash
from ml_dash import Experiment, WriterLockedError, load


def wait_for(predicate, timeout):
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.02)


FORKING_WRITER = textwrap.dedent("""
    import multiprocessing, sys, time, ml_dash

    def worker():
        time.sleep(30)

    exp = ml_dash.Experiment(prefix="w/fork", dash_root=sys.argv[1])
    exp.run.start()
    exp.metrics("train").log(step=0).flush()
    child = multiprocessing.get_context("fork").Process(target=worker)
    child.start()
    print(child.pid, flush=True)
    time.sleep(30)
""")


def test_killed_writer_with_a_forked_child_leaves_no_lock(dash_root):
    writer = subprocess.Popen([sys.executable, "-c", FORKING_WRITER, dash_root],
                              stdout=subprocess.PIPE, text=True)
    child_pid = None
    try:
        child_pid = int(writer.stdout.readline())
        # the child closed its copy of the lock file; the parent still holds the lock
        second = subprocess.run([sys.executable, "-c", SECOND_WRITER.replace("w/lock", "w/fork"),
                                 dash_root, "linux"], capture_output=True, text=True, timeout=60,
                                check=False)
        assert second.stdout.startswith("refused:") and f"pid={writer.pid}" in second.stdout
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        os.kill(child_pid, 0)  # the worker lives on, as DataLoader workers do
        view = load("w/fork", dash_root=dash_root)
        assert view.status == "RUNNING" and view.stale is True
        with Experiment(prefix="w/fork", dash_root=dash_root).run as exp:  # no WriterLockedError
            exp.metrics("train").log(step=1)
        assert len(view.metrics("train")) == 2 and view.status == "COMPLETED"
        view.close()
    finally:
        writer.kill()
        if child_pid:
            os.kill(child_pid, signal.SIGKILL)


def test_second_experiment_of_a_prefix_in_one_process_is_told_it_is_this_process(dash_root):
    with Experiment(prefix="a/b", dash_root=dash_root).run as exp:
        exp.metrics.log(x=1)
        with pytest.raises(WriterLockedError) as error:
            Experiment(prefix="a/b", dash_root=dash_root).run.start()
        message = str(error.value)
        assert "already open for writing in this process" in message
        assert f"pid={os.getpid()}" in message and "another live process" not in message
        exp.metrics.log(x=2)  # the first run goes on
    assert len(load("a/b", dash_root=dash_root).metrics) == 2


FIRST_WRITER = textwrap.dedent("""
    import sys, ml_dash
    exp = ml_dash.Experiment(prefix="w/lock", dash_root=sys.argv[1])
    exp.run.start()
    for i in range(5):
        exp.metrics("train").log(i=i, who=1.0)
    exp.flush()
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(5, 8):
        exp.metrics("train").log(i=i, who=1.0)
    exp.metrics("mine").log(x=1.0)   # a new stream: it must not take the other's stream id
    try:
        exp.flush()
        print("flushed", flush=True)
    except ml_dash.WriterLockedError as error:
        print("refused:", error, flush=True)
""")

SECOND_WRITER = textwrap.dedent("""
    import sys, ml_dash
    if sys.argv[2] == "no-proc-locks":  # as where /proc/locks cannot be read (not Linux)
        import ml_dash.storage.lock as lock
        lock.held_flocks = lambda: None
    try:
        exp = ml_dash.Experiment(prefix="w/lock", dash_root=sys.argv[1])
        exp.run.start()
    except ml_dash.WriterLockedError as error:
        print("refused:", error, flush=True)
        sys.exit(0)
    for i in range(5, 8):
        exp.metrics("train").log(i=i, who=2.0)
    exp.metrics("theirs").log(y=2.0)
    exp.run.complete()
    print("written", flush=True)
""")


@pytest.mark.parametrize("platform", ["linux", "no-proc-locks"])
def test_deleting_writer_lock_under_a_live_writer_lets_no_second_writer_overwrite(dash_root, platform):
    first = subprocess.Popen([sys.executable, "-c", FIRST_WRITER, dash_root],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "ready"
        os.unlink(os.path.join(dash_root, "w", "lock", "writer.lock"))
        with load("w/lock", dash_root=dash_root) as view:
            assert view.stale is False  # its writer lives on without the file
        second = subprocess.run([sys.executable, "-c", SECOND_WRITER, dash_root, platform],
                                capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 0, second.stderr
        out, _ = first.communicate("go\n", timeout=60)
    finally:
        first.kill()
    view = load("w/lock", dash_root=dash_root)
    train = view.metrics("train").read(limit=100)["data"]
    if platform == "linux":
        # the newcomer is refused at once: the first writer's lock file is gone, its flock is not
        assert second.stdout.startswith("refused:") and f"pid={first.pid}" in second.stdout
        assert out.startswith("flushed")
        assert [(p["data"]["i"], p["data"]["who"]) for p in train] == [(i, 1.0) for i in range(8)]
        assert view.metrics.names() == ["train", "mine"]
    else:
        # the newcomer got in; the first writer finds out at its next flush and writes nothing
        assert second.stdout.strip() == "written"
        assert out.startswith("refused:") and "no longer writes it" in out
        assert [p["data"]["who"] for p in train] == [1.0] * 5 + [2.0] * 3
        assert view.metrics.names() == ["train", "theirs"]
        assert list(view.metrics("theirs").column("y")) == [2.0]
    assert list(view.metrics("train").column("i")) == list(range(8))
    view.close()
    assert ml_dash.check("w/lock", dash_root=dash_root).ok


NEVER_FLUSHING_WRITER = textwrap.dedent("""
    import sys, time, ml_dash
    exp = ml_dash.Experiment(prefix="w/timer", dash_root=sys.argv[1])
    exp.run.start()
    for step in range(15):
        exp.metrics("train").log(step=step)   # never flushed by the script
        time.sleep(0.01)
    print("logged", flush=True)
    sys.stdin.readline()                       # a long step: blocks until the test is done
""")


def test_staged_points_are_committed_on_a_timer(dash_root):
    env = dict(os.environ, ML_DASH_FLUSH_INTERVAL="0.5")
    writer = subprocess.Popen([sys.executable, "-c", NEVER_FLUSHING_WRITER, dash_root],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert writer.stdout.readline().strip() == "logged"
        logged = time.monotonic()
        view = load("w/timer", dash_root=dash_root)
        assert wait_for(lambda: len(view.metrics("train")) == 15, timeout=10)
        assert time.monotonic() - logged < 5  # about the interval, not the end of the run
        assert writer.poll() is None and view.status == "RUNNING"
        writer.send_signal(signal.SIGKILL)    # and the commit survives kill -9
        writer.wait(timeout=10)
        assert list(view.metrics("train").column("step")) == list(range(15))
        view.close()
    finally:
        writer.kill()


def test_a_timed_commit_racing_flushes_commits_every_point_once(dash_root, monkeypatch):
    monkeypatch.setenv("ML_DASH_FLUSH_INTERVAL", "0.002")
    with Experiment(prefix="a/race", dash_root=dash_root).run as exp:
        train, other = exp.metrics("train"), exp.metrics("other")
        for step in range(3000):
            train.log(step=step)
            other.log(step=step)
            if step % 7 == 0:
                exp.flush()
            elif step % 50 == 0:
                time.sleep(0.003)  # let the timer in
    with load("a/race", dash_root=dash_root) as view:
        for name in ("train", "other"):
            rows = view.metrics(name).read(limit=5000)["data"]
            assert [row["data"]["step"] for row in rows] == list(range(3000))
            assert list(view.metrics(name).column("step")) == list(range(3000))


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_a_bad_flush_interval_is_refused_at_start(dash_root, monkeypatch, value):
    monkeypatch.setenv("ML_DASH_FLUSH_INTERVAL", value)
    with pytest.raises(ml_dash.ConfigurationError, match="ML_DASH_FLUSH_INTERVAL"):
        Experiment(prefix="a/bad", dash_root=dash_root).run.start()
    monkeypatch.delenv("ML_DASH_FLUSH_INTERVAL")
    with Experiment(prefix="a/bad", dash_root=dash_root).run as exp:  # nothing was left locked
        exp.metrics.log(x=1)


TERMINATED_WRITER = textwrap.dedent("""
    import signal, sys, time, ml_dash
    mode = sys.argv[2]
    if mode == "own-handler":
        signal.signal(signal.SIGTERM, lambda *_: (print("own handler", flush=True), sys.exit(3)))
    exp = ml_dash.Experiment(prefix="w/term", dash_root=sys.argv[1])
    def work():
        for step in range(15):
            exp.metrics("train").log(step=step)   # staged, never flushed
        print("logged", flush=True)
        time.sleep(30)
    if mode == "by-hand":
        exp.run.start()
        work()
    else:
        with exp.run:
            work()
""")


@pytest.mark.parametrize("mode, status", [
    ("with", "CANCELLED"), ("by-hand", "CANCELLED"), ("own-handler", "FAILED")])
def test_sigterm_cancels_the_run_and_commits_what_was_staged(dash_root, mode, status):
    writer = subprocess.Popen([sys.executable, "-c", TERMINATED_WRITER, dash_root, mode],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "logged"
        writer.send_signal(signal.SIGTERM)
        out, err = writer.communicate(timeout=20)  # the process still ends
    finally:
        writer.kill()
    if mode == "own-handler":  # the application's handler is left alone
        assert out.strip() == "own handler" and writer.returncode == 3
    else:
        assert writer.returncode != 0 and "SIGTERM" in err
    with load("w/term", dash_root=dash_root) as view:
        assert view.status == status and not view.stale
        assert list(view.metrics("train").column("step")) == list(range(15))


def test_sigterm_handler_is_installed_only_while_a_run_is_open(dash_root):
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with Experiment(prefix="a/one", dash_root=dash_root).run:
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        with Experiment(prefix="a/two", dash_root=dash_root).run:
            pass
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # a/one is still open
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


FLUSHING_LOOP = textwrap.dedent("""
    import sys, ml_dash
    with ml_dash.Experiment(prefix="w/loop", dash_root=sys.argv[1]).run as exp:
        train = exp.metrics("train")
        start = len(train)
        print("started", flush=True)
        for step in range(start, start + 10_000_000):
            train.log(step=step).flush()
""")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_a_flushing_loop_commits_no_point_twice(dash_root, signum):
    # Most interrupts land during a commit; the interrupt is raised just
    # after it returns, and the snapshot must count as stored, not staged again.
    for delay in (0.05, 0.1, 0.15, 0.2):
        loop = subprocess.Popen([sys.executable, "-c", FLUSHING_LOOP, dash_root],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert loop.stdout.readline().strip() == "started"
            time.sleep(delay)
            loop.send_signal(signum)
            _, err = loop.communicate(timeout=20)
        finally:
            loop.kill()
        with load("w/loop", dash_root=dash_root) as view:
            assert view.status == "CANCELLED", err
            steps = view.metrics("train").column("step")
            assert list(steps) == list(range(len(steps)))
    assert ml_dash.check("w/loop", dash_root=dash_root).ok


def test_repair_and_compaction_refuse_a_writer_whose_lock_file_was_deleted(dash_root):
    with Experiment(prefix="a/live", dash_root=dash_root).run as exp:
        exp.metrics("train").log(x=1.0).flush()
        os.unlink(os.path.join(exp.path, "writer.lock"))
        with pytest.raises(WriterLockedError, match="deleted or replaced"):
            ml_dash.check("a/live", dash_root=dash_root, repair=True)
        with pytest.raises(WriterLockedError, match="deleted or replaced"):
            ml_dash.compact("a/live", dash_root=dash_root)
        exp.metrics("train").log(x=2.0)
    assert ml_dash.check("a/live", dash_root=dash_root, repair=True).ok  # once it ended
    assert list(load("a/live", dash_root=dash_root).metrics("train").column("x")) == [1.0, 2.0]
