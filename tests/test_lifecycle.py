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
