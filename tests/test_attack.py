"""Hostile interleavings and inputs found by attacking the public calls: each
test is a problem that once hung, crashed or broke a later call."""

import subprocess
import sys
import textwrap


def run_script(script, *args, timeout=30):
    """Run ``script`` in a fresh interpreter; a hang fails the test, not the suite."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


FORK_WHILE_FLUSHING = """
    import os, sys, threading, time, ml_dash

    exp = ml_dash.Experiment(prefix="a/fork", dash_root=sys.argv[1])
    exp.run.start()
    stop = False

    def flusher():  # holds the session's flush lock most of the time
        while not stop:
            exp.metrics("train").log(loss=1)
            exp.flush()

    thread = threading.Thread(target=flusher)
    thread.start()
    outcomes = []
    for _ in range(5):
        pid = os.fork()
        if pid == 0:
            try:
                exp.logs.info("from a child")
                code = 3  # staged where nobody will ever commit it
            except ml_dash.ExperimentError:
                code = 0
            os._exit(code)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                outcomes.append(os.waitstatus_to_exitcode(status))
                break
            time.sleep(0.01)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            outcomes.append("hang")
    stop = True
    thread.join()
    exp.run.complete()
    print(outcomes)
"""


def test_a_forked_child_logging_while_the_parent_flushes_is_refused_not_hung(dash_root):
    # The child inherits the session's flush lock held by the flushing thread,
    # which does not exist there: staging a log record waited for it forever.
    result = run_script(FORK_WHILE_FLUSHING, dash_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[0, 0, 0, 0, 0]", result.stdout + result.stderr
