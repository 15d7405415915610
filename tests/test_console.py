"""Console capture: stdout and stderr lines as log records, the terminal still seeing them."""

import subprocess
import sys
import textwrap

import pytest

from ml_dash import RUN, ConfigurationError, Experiment, load

CAPTURING = """
import sys, threading
from ml_dash import Experiment
out, err = sys.stdout, sys.stderr
with Experiment("a/con/run", dash_root=sys.argv[1], capture_console=True).run as exp:
    print("epoch 1 loss 0.5")
    print("partial ", end="")
    sys.stderr.write("a warning on stderr\\n")
    exp.logs.info("a record of our own")
    print("line ended later")
    print()
    print("   ")
    for percent in range(0, 101, 10):
        sys.stdout.write(f"\\rprogress {percent}%")
    sys.stdout.write("\\r\\n")
    print("crlf line\\r")
    print("unclosed at the end", end="")
print("after the run", "restored:", sys.stdout is out and sys.stderr is err)
"""


def _records(dash_root, prefix="a/con/run"):
    with load(prefix, dash_root=dash_root) as view:
        return [(r["message"], r["metadata"]) for r in view.logs.read()["data"]]


def test_lines_become_records_and_the_terminal_still_sees_them(dash_root):
    done = subprocess.run([sys.executable, "-c", CAPTURING, dash_root], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("epoch 1 loss 0.5\npartial [INFO] a record of our own\nline ended later\n")
    assert "progress 100%" in done.stdout and "a warning on stderr" in done.stderr
    assert done.stdout.endswith("unclosed at the endafter the run restored: True\n")
    stdout, stderr = {"console": "stdout"}, {"console": "stderr"}
    records = _records(dash_root)
    assert ("a record of our own", {}) in records  # printed by exp.logs: stored once, not captured again
    assert [r for r in records if r[1]] == [  # console lines in the order they were completed
        ("epoch 1 loss 0.5", stdout),
        ("a warning on stderr", stderr),
        ("partial line ended later", stdout),
        ("progress 100%", stdout),  # as the terminal shows it after the redraws
        ("crlf line", stdout),
        ("unclosed at the end", stdout),
    ]
    assert len(records) == 7


def test_off_by_default(dash_root, capsys):
    with Experiment("a/con/off", dash_root=dash_root).run:
        print("not stored")
    assert "not stored" in capsys.readouterr().out
    assert _records(dash_root, "a/con/off") == []


def test_the_streams_are_restored_after_a_failure_and_by_the_launch_setting(dash_root, monkeypatch):
    out, err = sys.stdout, sys.stderr
    with pytest.raises(RuntimeError):
        with Experiment("a/con/fail", dash_root=dash_root, capture_console=True).run:
            print("before the failure")
            assert sys.stdout is not out
            raise RuntimeError("stop")
    assert sys.stdout is out and sys.stderr is err
    assert ("before the failure", {"console": "stdout"}) in _records(dash_root, "a/con/fail")
    monkeypatch.setattr(RUN, "capture_console", True)
    with Experiment("a/con/launch", dash_root=dash_root).run:
        print("by the launch setting")
    assert sys.stdout is out
    assert _records(dash_root, "a/con/launch") == [("by the launch setting", {"console": "stdout"})]
    with pytest.raises(ConfigurationError, match="capture_console must be True or False, got int 1"):
        Experiment("a/con/bad", dash_root=dash_root, capture_console=1)


THREADS = """
import sys, threading
from ml_dash import Experiment
with Experiment("a/con/threads", dash_root=sys.argv[1], capture_console=True).run as exp:
    def chatter(name):
        for i in range(300):
            sys.stdout.write(f"{name} line {i}\\n")
            if i % 50 == 0:
                exp.logs.info(f"{name} record {i}")  # records printed by another thread meanwhile
    threads = [threading.Thread(target=chatter, args=(f"t{n}",)) for n in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
"""


def test_threads_printing_at_once_lose_no_line(dash_root):
    done = subprocess.run([sys.executable, "-c", THREADS, dash_root], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    with load("a/con/threads", dash_root=dash_root) as view:
        rows = view.logs.read(limit=10_000)["data"]
    captured = sorted(r["message"] for r in rows if r["metadata"].get("console") == "stdout")
    assert captured == sorted(f"t{n} line {i}" for n in range(4) for i in range(300))
    ours = [r["message"] for r in rows if not r["metadata"]]
    assert sorted(ours) == sorted(f"t{n} record {i}" for n in range(4) for i in range(0, 300, 50))


def test_a_run_that_closes_while_a_line_is_half_printed(dash_root):
    script = textwrap.dedent("""
        import sys
        from ml_dash import Experiment
        exp = Experiment("a/con/open", dash_root=sys.argv[1], capture_console=True)
        exp.run.start()
        print("left open", end="")
    """)  # the interpreter's exit completes the run: the half line is stored
    done = subprocess.run([sys.executable, "-c", script, dash_root], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "left open"
    assert _records(dash_root, "a/con/open") == [("left open", {"console": "stdout"})]


FORK_WHILE_PRINTING = """
import os, sys, threading, time
from ml_dash import Experiment, ExperimentError
exp = Experiment("a/con/fork", dash_root=sys.argv[1], capture_console=True)
exp.run.start()
printing = True
def spam():
    while printing:
        print("parent line " * 20)
threading.Thread(target=spam, daemon=True).start()
for attempt in range(150):
    child = os.fork()
    if child == 0:  # a worker: prints, ends its copy of the run, and leaves
        print("child line")
        if attempt % 2:
            try:
                exp.run.complete()
            except ExperimentError:  # the run is the parent's
                pass
        os._exit(0)
    deadline = time.monotonic() + 5
    while not os.waitpid(child, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(child, 9)
            sys.exit(f"the child of fork {attempt} hung")
        time.sleep(0.002)
printing = False
exp.run.complete()
"""


def test_a_child_forked_while_a_thread_prints_does_not_hang(dash_root):
    # A thread of the parent inside the tee at the fork held its lock in the child forever.
    done = subprocess.run([sys.executable, "-c", FORK_WHILE_PRINTING, dash_root], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    records = _records(dash_root, "a/con/fork")
    assert records and all(message.startswith("parent line") for message, _ in records)


PRINTING_WHILE_RUNS_END = """
import sys, threading, time
from ml_dash import Experiment
printing = True
def spam():
    while printing:
        print("a line of a thread " * 20)
thread = threading.Thread(target=spam)
thread.start()
for n in range(6):
    with Experiment(f"a/con/ends{n}", dash_root=sys.argv[1], capture_console=True).run:
        print("a line of the run")
        time.sleep(0.2)
    time.sleep(0.1)
printing = False
thread.join()
"""


def test_a_thread_printing_while_runs_end_does_not_crash_the_process(dash_root):
    # print() holds sys.stdout without a reference of its own while it writes (CPython
    # 3.11): the tee that the end of a run took out was freed under another thread's print.
    done = subprocess.run([sys.executable, "-c", PRINTING_WHILE_RUNS_END, dash_root],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert ("a line of the run", {"console": "stdout"}) in _records(dash_root, "a/con/ends5")


def test_runs_ended_out_of_order_give_the_streams_back(dash_root):
    out = sys.stdout
    first = Experiment("a/con/first", dash_root=dash_root, capture_console=True).run.start()
    second = Experiment("a/con/second", dash_root=dash_root, capture_console=True).run.start()
    print("while both capture")
    first.run.complete()  # not the last one in: its tee stays in the chain until the second ends
    print("only the second captures")
    second.run.complete()
    assert sys.stdout is out  # not a tee left passing text on for the rest of the process
    stdout = {"console": "stdout"}
    assert _records(dash_root, "a/con/first") == [("while both capture", stdout)]
    assert _records(dash_root, "a/con/second") == [("while both capture", stdout),
                                                     ("only the second captures", stdout)]
