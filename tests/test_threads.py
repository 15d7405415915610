"""Threads of one process, and views that are never closed.

A hang must fail a test, never hang the suite: everything that could
deadlock runs in a subprocess with a timeout (``tests/thread_stress.py``
also dumps every thread's stack when a round takes too long).
``python tests/thread_stress.py --rounds 1000`` is the long stress run.
"""

import gc
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ml_dash
import ml_dash.storage.registry as storage_registry
from ml_dash import Experiment, load

HERE = os.path.dirname(os.path.abspath(__file__))
STRESS = os.path.join(HERE, "thread_stress.py")
PREFIX = "alice/proj/exp"


def stress(tmp_path, *args, timeout=120):
    done = subprocess.run([sys.executable, STRESS, "--dir", str(tmp_path / "dash"), *args],
                          capture_output=True, text=True, check=False, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["open_environments"] == 0, summary  # every dropped view was released
    return summary


@pytest.mark.parametrize("mode", ["logs", "params", "files", "view"])
def test_first_read_while_another_thread_flushes_does_not_hang(tmp_path, mode):
    # Before: the reader's open_db waited for LMDB's writer mutex holding the
    # GIL, and the flushing thread held the mutex waiting for the GIL.
    summary = stress(tmp_path, "--mode", mode, "--rounds", "16", "--round-timeout", "15")
    assert summary["rounds"] == 16 and summary["flushes"] > 0


def test_reads_between_flushes_do_not_hang_against_the_background_sync(tmp_path):
    # One thread only: the other party was the sync thread writing its watermark.
    summary = stress(tmp_path, "--mode", "sync", "--rounds", "8", "--round-timeout", "15")
    assert summary["rounds"] == 8


def test_thread_stress_flushes_and_first_reads_of_every_kind(tmp_path):
    # Bounded in time here; ``--rounds 1000`` without --seconds is the long run.
    summary = stress(tmp_path, "--rounds", "1000", "--seconds", "8", "--round-timeout", "30",
                     "--check-every", "10")
    assert summary["rounds"] >= 10, summary


HOLD_THE_WRITER_MUTEX = """
import lmdb, signal, sys, time
signal.alarm(20)  # never outlive the test
env = lmdb.open(sys.argv[1], max_dbs=1024)
txn = env.begin(write=True)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
txn.abort()
"""


def test_another_process_holding_the_writer_mutex_freezes_only_the_thread_that_waits(dash_root):
    with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        exp.params.set(lr=0.1)
        exp.metrics.log(x=1).flush()
    exp = Experiment(prefix=PREFIX, dash_root=dash_root)
    exp.run.start()  # reopened: no handle of the params sub-database is open yet
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_WRITER_MUTEX, exp.path, "2"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        got = []
        waiting = threading.Thread(target=lambda: got.append(exp.params.get()))
        waiting.start()
        time.sleep(0.3)  # it now waits for the holder (before: holding the GIL)
        reads, started = 0, time.monotonic()
        while time.monotonic() - started < 0.3:
            assert len(exp.metrics) == 1
            reads += 1
        assert waiting.is_alive() and reads > 100
        waiting.join(timeout=30)
        assert got == [{"lr": 0.1}]
    finally:
        holder.kill()
        holder.wait()
        exp.run.complete()


FORK_WHILE_FLUSHING = """
import os, signal, sys, threading, time
from ml_dash import Experiment
dash_root = sys.argv[1]
with Experiment(prefix="alice/proj/exp", dash_root=dash_root).run as exp:
    exp.params.set(lr=0.1)
    exp.logs.info("ready")
exp = Experiment(prefix="alice/proj/exp", dash_root=dash_root, sync_interval=0.001)
exp.run.start()  # reopened: the params and logs sub-databases have no handles yet
stop = threading.Event()
def flusher():
    while not stop.is_set():
        exp.metrics.log(x=1).flush()
thread = threading.Thread(target=flusher)
thread.start()
failed = 0
for _ in range(20):
    time.sleep(0.01)
    pid = os.fork()  # maybe while the flusher or the sync thread holds the write lock
    if pid == 0:
        signal.alarm(10)  # a hung child dies
        ok = exp.params.get() == {"lr": 0.1} and exp.logs.read()["total"] == 1
        os._exit(0 if ok else 1)
    failed += os.waitpid(pid, 0)[1] != 0
    if failed:
        break
stop.set()
thread.join()
exp.run.complete()
print(failed)
"""


def test_forked_children_read_while_the_parent_flushes(tmp_path):
    # Before: a child forked while another thread of the parent committed or
    # synced hung at its first read (closing its copy of the environment
    # waited for that thread); a lock held by another thread at fork() must
    # not stay held in the child either.
    done = subprocess.run([sys.executable, "-c", FORK_WHILE_FLUSHING, str(tmp_path / "dash")],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "0"


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def _refs(path):
    env = storage_registry._registry.get(os.path.realpath(path))
    return 0 if env is None else env.refs


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_a_thousand_views_never_closed_keep_no_descriptors_or_references(dash_root):
    with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        exp.metrics("train").log(loss=0.5).flush()
        exp.params.set(lr=0.1)
        exp.logs.info("ready")
        path = exp.path
    kept = []
    for i in range(1000):
        view = load(PREFIX, dash_root=dash_root)  # never closed
        loss = view.metrics("train").column("loss")
        assert view.params.get() == {"lr": 0.1} and view.logs.read()["total"] == 1
        if i < 5:
            kept.append(loss)  # arrays outlive their views
        if i == 10:
            gc.collect()  # (garbage of earlier tests holds descriptors too)
            baseline = (_open_fds(), _refs(path))
    gc.collect()
    assert (_open_fds(), _refs(path)) == baseline == (baseline[0], 1)
    del view, loss
    gc.collect()
    assert _refs(path) == 0
    before, after = ml_dash.compact(PREFIX, dash_root=dash_root)  # refused while views were counted
    assert after <= before
    assert [array.tolist() for array in kept] == [[0.5]] * 5


def test_unclosed_views_are_released_when_collected_and_close_twice_is_harmless(dash_root):
    with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        exp.metrics.log(x=1.0).flush()
        path = exp.path
    views = [load(PREFIX, dash_root=dash_root) for _ in range(3)]
    assert _refs(path) == 3
    del views
    gc.collect()
    assert _refs(path) == 0
    ml_dash.compact(PREFIX, dash_root=dash_root)

    kept = load(PREFIX, dash_root=dash_root)
    closed = load(PREFIX, dash_root=dash_root)
    column = closed.metrics.column("x")
    closed.close()
    closed.close()
    with closed:
        pass
    del closed
    gc.collect()
    assert _refs(path) == 1  # the releases of 'closed' took nothing from 'kept'
    assert len(kept.metrics) == 1 and column.tolist() == [1.0]
    stream = load(PREFIX, dash_root=dash_root).metrics  # the view itself is dropped at once
    assert stream.read()["total"] == 1 and _refs(path) == 2
    del stream
    assert _refs(path) == 1
    kept.close()
    assert _refs(path) == 0


ANALYSIS_LOOP = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
import ml_dash
total = 0.0
for i in range(int(sys.argv[2])):
    view = ml_dash.load(f"sweep/run-{i}", dash_root=sys.argv[1])  # never closed
    total += float(view.metrics("train").column("loss")[-1]) + len(view.params.get())
print(total)
"""


def test_analysis_loop_over_600_runs_that_never_closes_views_under_1024_files(tmp_path):
    dash_root = tmp_path / "dash"
    with Experiment(prefix="sweep/run-0", dash_root=str(dash_root)).run as exp:
        exp.metrics("train").log(loss=0.25).flush()
        exp.params.set(lr=0.1)
    for i in range(1, 600):  # the same one-point run, 600 times over
        shutil.copytree(dash_root / "sweep" / "run-0", dash_root / "sweep" / f"run-{i}")
    done = subprocess.run([sys.executable, "-c", ANALYSIS_LOOP, str(dash_root), "600"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout) == 600 * 1.25


OUT_OF_DESCRIPTORS = """
import resource, sys
import ml_dash
ml_dash.load("alice/proj/exp", dash_root=sys.argv[1]).close()  # imports everything it needs
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
hoard = []
try:
    while True:
        hoard.append(open("/dev/null"))
except OSError:
    pass
try:
    ml_dash.load("alice/proj/exp", dash_root=sys.argv[1])
except ml_dash.StorageError as exc:
    print(exc.errno, exc)
"""


def test_running_out_of_descriptors_says_so_and_does_not_suggest_repair(dash_root):
    with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        exp.metrics.log(x=1).flush()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(OUT_OF_DESCRIPTORS), dash_root],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "too many open files" in done.stdout and "repair" not in done.stdout, done.stdout
    assert done.stdout.split()[0] == "24"  # EMFILE


FORGOTTEN_EXPERIMENTS = """
import resource, sys
import ml_dash
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
for i in range(600):
    exp = ml_dash.Experiment(prefix=f"sweep/run{i}", dash_root=sys.argv[1])
    with exp.run:
        exp.metrics("train").log(loss=1.0)
    assert len(exp.metrics("train")) == 1  # read after the run: the experiment keeps a reader
print("ok")
"""


def test_experiments_read_after_their_run_and_forgotten_keep_no_descriptors(dash_root):
    done = subprocess.run([sys.executable, "-c", FORGOTTEN_EXPERIMENTS, dash_root],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_points_logged_by_other_threads_while_the_run_closes_are_stored_or_refused(dash_root):
    """Every log() that returned is stored; one the closing run no longer takes raises.

    Threads that go on logging while the main thread completes the run used to stage
    points after the last commit: their log() returned, and up to 100,000 were lost.
    """
    from ml_dash.errors import RunNotStartedError

    for trial in range(3):
        exp = Experiment(prefix=f"{PREFIX}-{trial}", dash_root=dash_root)
        exp.run.start()
        returned = [0] * 4
        refused = []

        def spin(t):
            while True:
                try:
                    if t % 2:
                        exp.metrics(f"s{t}").log(v=1.0)
                    else:  # a dict routed to its stream: Metrics.log stages it
                        exp.metrics.log(**{f"s{t}": {"v": 1.0}})
                except RunNotStartedError as exc:
                    refused.append(exc)
                    return
                returned[t] += 1

        threads = [threading.Thread(target=spin, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.05)
        exp.run.complete()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert len(refused) == 4 and "the run is closed" in str(refused[0])
        view = load(f"{PREFIX}-{trial}", dash_root=dash_root)
        stored = [len(view.metrics(f"s{t}").read(start_index=0, limit=10**7)["data"]) for t in range(4)]
        assert stored == returned, (trial, stored, returned)
