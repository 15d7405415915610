"""Real processes: a live reader, SIGKILLed writers, map growth, fork."""

import os
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np

from ml_dash import Experiment, load

WRITER = textwrap.dedent("""
    import sys, ml_dash
    import ml_dash.storage.env as env
    env.INITIAL_MAP_SIZE = int(sys.argv[3])
    report = int(sys.argv[4])  # print the progress every this many steps (0: never)
    exp = ml_dash.Experiment(prefix="w/run", dash_root=sys.argv[1])
    exp.run.start()
    train, evaluate = exp.metrics("train"), exp.metrics("eval")
    start = len(train)
    for step in range(start, start + int(sys.argv[2])):
        train.log(step=step, loss=1.0 / (step + 1), tag="t" * (step % 7))
        evaluate.log(step=step, acc=step * 0.5)
        exp.metrics.log(step=step).flush()
        if step == start:
            print("started", flush=True)
        elif report and (step - start) % report == 0:
            print(step - start, flush=True)  # steps flushed so far: a handshake for the killer
    exp.run.complete()
    print("done", flush=True)
""")


def start_writer(dash_root, steps, map_size=64 << 20, report=0):
    return subprocess.Popen([sys.executable, "-c", WRITER, dash_root, str(steps), str(map_size),
                             str(report)], stdout=subprocess.PIPE, text=True)


def check_store(dash_root):
    """Every stream a contiguous prefix of the oracle; columns equal rows; counts equal."""
    view = load("w/run", dash_root=dash_root)
    counts = {name: len(view.metrics(name)) for name in ("train", "eval", None)}
    for name in ("train", "eval", None):
        stream = view.metrics(name)
        page = stream.read(limit=counts[name] + 10)
        assert [row["index"] for row in page["data"]] == list(range(counts[name]))
        assert [row["data"]["step"] for row in page["data"]] == list(range(counts[name]))
        assert np.array_equal(stream.column("step"), np.arange(counts[name]))
        assert np.array_equal(stream.column("_ts"), [r["data"]["_ts"] for r in page["data"]])
    loss = view.metrics("train").column("loss")
    assert np.array_equal(loss, 1.0 / (np.arange(counts["train"]) + 1))
    view.close()
    return counts


def test_reader_process_sees_whole_snapshots_while_writing(dash_root):
    writer = start_writer(dash_root, 40_000)
    assert writer.stdout.readline().strip() == "started"
    reader = textwrap.dedent("""
        import sys, time, ml_dash
        view = ml_dash.load("w/run", dash_root=sys.argv[1])
        polls = 0
        deadline = time.time() + 20
        while time.time() < deadline:
            counts = [len(view.metrics(n)) for n in ("train", "eval")]
            assert counts[1] >= counts[0], counts  # eval is counted after train
            last = view.metrics("train").read(start_index=max(0, counts[0] - 1), limit=1)
            if last["data"]:
                assert last["data"][0]["data"]["step"] == counts[0] - 1
            polls += 1
            if view.status == "COMPLETED":
                break
            if counts[0] > 0 and polls > 200:
                break  # enough polls of a live run
        print(polls, counts[0])
    """)
    out = subprocess.run([sys.executable, "-c", reader, dash_root], capture_output=True, text=True)
    assert writer.wait(timeout=60) == 0
    assert out.returncode == 0, out.stderr
    polls, seen = map(int, out.stdout.split())
    assert polls > 1
    assert check_store(dash_root) == {"train": 40_000, "eval": 40_000, None: 40_000}


def test_sigkilled_writer_loses_only_its_unflushed_snapshot(dash_root):
    rng = random.Random(7)
    for _ in range(4):
        writer = start_writer(dash_root, 1_000_000, report=100)
        assert writer.stdout.readline().strip() == "started"
        # Killed after a random number of reported steps, not after a random sleep:
        # how far a writer gets in a given time depends on the machine.
        for _ in range(rng.randint(1, 20)):
            writer.stdout.readline()
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        counts = check_store(dash_root)
        # flush() commits all three streams at once: a kill never splits a snapshot
        assert counts["train"] == counts["eval"] == counts[None] > 0
        assert load("w/run", dash_root=dash_root).stale is True
    # writable again with no manual unlock, continuing the indices
    before = check_store(dash_root)["train"]
    writer = start_writer(dash_root, 10)
    assert writer.wait(timeout=60) == 0
    assert check_store(dash_root)["train"] == before + 10


def test_map_grows_from_a_small_initial_map(dash_root):
    writer = start_writer(dash_root, 4000, map_size=256 << 10)
    assert writer.wait(timeout=120) == 0
    assert check_store(dash_root)["train"] == 4000
    assert os.path.getsize(os.path.join(dash_root, "w", "run", "data.mdb")) > 256 << 10


def test_forked_child_reads_and_parent_keeps_writing(dash_root):
    with Experiment(prefix="w/run", dash_root=dash_root).run as exp:
        exp.metrics("train").log(step=0).flush()
        view = load("w/run", dash_root=dash_root)
        assert len(view.metrics("train")) == 1
        pid = os.fork()
        if pid == 0:  # the child: read through the inherited view, then a new one
            try:
                ok = len(view.metrics("train")) == 1 and len(load("w/run", dash_root=dash_root).metrics("train")) == 1
            except BaseException:
                ok = False
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        exp.metrics("train").log(step=1).flush()
        assert len(view.metrics("train")) == 2


def test_interpreter_exit_commits_open_runs(dash_root):
    script = textwrap.dedent("""
        import sys, ml_dash
        exp = ml_dash.Experiment(prefix="w/exit", dash_root=sys.argv[1])
        exp.run.start()
        exp.metrics("train").log(loss=0.5)   # staged, never flushed by the script
        if sys.argv[2] == "raise":
            raise RuntimeError("boom")
    """)
    for mode, status in (("ok", "COMPLETED"), ("raise", "FAILED")):
        done = subprocess.run([sys.executable, "-c", script, dash_root, mode], capture_output=True, text=True)
        assert (done.returncode == 0) == (mode == "ok"), done.stderr
        view = load("w/exit", dash_root=dash_root)
        assert view.status == status
        assert view.metrics("train").read()["data"][-1]["data"]["loss"] == 0.5
        view.close()
