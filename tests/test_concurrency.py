"""Concurrency with real processes: readers during writes and map growth, killed and
stalled readers, a second writer, forked children, compaction."""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import ml_dash
from ml_dash import Experiment, ExperimentError, WriterLockedError, load

PREFIX = "w/run"

WRITER = textwrap.dedent("""
    import sys, time, ml_dash
    import ml_dash.storage.env as env
    env.INITIAL_MAP_SIZE = 64 << 10  # the map grows many times while readers poll
    exp = ml_dash.Experiment(prefix="w/run", dash_root=sys.argv[1])
    exp.run.start()
    streams = [exp.metrics("train"), exp.metrics("eval"), exp.metrics]
    for step in range(int(sys.argv[2])):
        for stream in streams:
            stream.log(step=step, text="x" * (step % 50))
        exp.flush()
        if step == 0:
            print("started", flush=True)
            sys.stdin.readline()  # go on once the readers poll
    exp.run.complete()
""")

# Counts of every stream read in ONE read transaction, straight from the files
# on disk: after each flush all streams must have the same count.
RAW_READER = textwrap.dedent("""
    import sys, time, struct, lmdb
    env = lmdb.open(sys.argv[1], readonly=True, lock=True, max_dbs=64, subdir=True)
    polls, last, seen_growth = 0, 0, False
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with env.begin() as txn:
                names = [k for k, _ in txn.cursor() if k.startswith(b"s:")]
                counts = []
                for name in names:
                    cursor = txn.cursor(db=env.open_db(name, txn=txn, create=False))
                    counts.append(struct.unpack(">Q", cursor.key())[0] + 1 if cursor.last() else 0)
        except lmdb.MapResizedError:
            env.set_mapsize(0)
            seen_growth = True
            continue
        assert len(set(counts)) <= 1, f"a snapshot seen in part: {counts}"
        assert not counts or counts[0] >= last, (counts, last)
        last = counts[0] if counts else 0
        polls += 1
        if polls == 1:
            print("ready", flush=True)
        if last >= int(sys.argv[2]):
            break
    print(polls, last, seen_growth)
""")

API_READER = textwrap.dedent("""
    import sys, time, numpy as np, ml_dash
    view = ml_dash.load("w/run", dash_root=sys.argv[1])
    polls, last = 0, 0
    deadline = time.time() + 30
    while time.time() < deadline:
        train, evaluate, root = (len(view.metrics(n)) for n in ("train", "eval", None))
        assert last <= train <= evaluate <= root, (last, train, evaluate, root)  # read in this order
        last = train
        if train:
            column = view.metrics("train").column("step")
            assert np.array_equal(column, np.arange(len(column))), "a column slot before its row"
            row = view.metrics("train").read(start_index=train - 1, limit=1)["data"][0]["data"]
            assert row["step"] == train - 1 and row["text"] == "x" * ((train - 1) % 50)
        polls += 1
        if polls == 1:
            print("ready", flush=True)
        if train >= int(sys.argv[2]):
            break
    print(polls, last)
""")


def test_readers_see_only_whole_snapshots_during_writes_and_map_growth(dash_root):
    steps = 6000
    writer = subprocess.Popen([sys.executable, "-c", WRITER, dash_root, str(steps)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "started"
    path = os.path.join(dash_root, "w", "run")
    readers = [subprocess.Popen([sys.executable, "-c", code, arg, str(steps)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for code, arg in ((RAW_READER, path), (API_READER, dash_root), (API_READER, dash_root))]
    for reader in readers:  # every reader polls before the writer goes on
        assert reader.stdout.readline().strip() == "ready", reader.communicate()[1]
    writer.stdin.write("go\n")
    writer.stdin.flush()
    assert writer.wait(timeout=120) == 0
    outputs = [reader.communicate(timeout=60) for reader in readers]
    for reader, (out, err) in zip(readers, outputs):
        assert reader.returncode == 0, err
        polls, seen = map(int, out.split()[:2])  # the line after "ready"
        assert polls > 10 and seen == steps
    assert os.path.getsize(os.path.join(path, "data.mdb")) > 1 << 20  # the map did grow
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok


# A reader that dies (or stalls) inside a read transaction pins the pages of
# that snapshot: the writer cannot reuse any page freed after it.
STUCK_READER = textwrap.dedent("""
    import sys, time, lmdb
    env = lmdb.open(sys.argv[1], readonly=True, lock=True, max_dbs=64)
    txn = env.begin()
    print("reading", flush=True)
    time.sleep(120)
""")


def grow_with_a_stuck_reader(dash_root, kill_reader, seconds=2.5):
    """Write for ``seconds`` while a reader stuck in a transaction is killed or kept."""
    exp = Experiment(prefix=PREFIX, dash_root=dash_root, sync_interval=0.02)
    exp.run.start()
    exp.metrics("train").log(step=0).flush()
    path = os.path.join(dash_root, "w", "run")
    reader = subprocess.Popen([sys.executable, "-c", STUCK_READER, path], stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "reading"
    if kill_reader:
        reader.send_signal(signal.SIGKILL)
        reader.wait()
    step, deadline = 1, time.monotonic() + seconds
    while time.monotonic() < deadline:
        exp.metrics("train").log(step=step)
        exp.metrics.log(step=step).flush()
        step += 1
        time.sleep(0.0005)
    exp.run.complete()
    reader.kill()
    reader.wait()
    return os.path.getsize(os.path.join(path, "data.mdb")), step


def test_killed_reader_does_not_make_the_file_grow_without_bound(tmp_path):
    stalled, stalled_steps = grow_with_a_stuck_reader(str(tmp_path / "stalled"), kill_reader=False)
    killed, killed_steps = grow_with_a_stuck_reader(str(tmp_path / "killed"), kill_reader=True)
    # a live stalled reader pins every freed page; a dead one is cleared by the writer
    per_step_stalled, per_step_killed = stalled / stalled_steps, killed / killed_steps
    assert per_step_killed < per_step_stalled / 4, (killed, killed_steps, stalled, stalled_steps)
    # and compaction gives back what the stalled reader cost
    before, after = ml_dash.compact(PREFIX, dash_root=str(tmp_path / "stalled"))
    assert before == stalled and after < before / 4
    assert ml_dash.check(PREFIX, dash_root=str(tmp_path / "stalled")).ok
    view = load(PREFIX, dash_root=str(tmp_path / "stalled"))
    assert np.array_equal(view.metrics("train").column("step"), np.arange(stalled_steps))
    assert view.status == "COMPLETED"


def test_compaction_refuses_while_another_process_reads(tmp_path, dash_root):
    with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        exp.metrics("train").log(step=0).flush()
    path = os.path.join(dash_root, "w", "run")
    reader = subprocess.Popen([sys.executable, "-c", STUCK_READER, path], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "reading"
        with pytest.raises(ExperimentError, match=f"processes {reader.pid} are reading"):
            ml_dash.compact(PREFIX, dash_root=dash_root)
    finally:
        reader.kill()
        reader.wait()
    ml_dash.compact(PREFIX, dash_root=dash_root)  # the dead reader's slot is cleared first
    assert len(load(PREFIX, dash_root=dash_root).metrics("train")) == 1


HOLDER = textwrap.dedent("""
    import sys, time, ml_dash
    exp = ml_dash.Experiment(prefix="w/run", dash_root=sys.argv[1])
    exp.run.start()
    exp.metrics("train").log(step=0).flush()
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    exp.run.complete()
""")


def test_second_writer_gets_a_clear_error_or_waits(dash_root):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, dash_root, "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(WriterLockedError, match=f"pid={holder.pid}"):
            Experiment(prefix=PREFIX, dash_root=dash_root).run.start()
        assert len(load(PREFIX, dash_root=dash_root).metrics("train")) == 1  # reading is fine
    finally:
        holder.kill()
        holder.wait()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, dash_root, "0.5"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    exp = Experiment(prefix=PREFIX, dash_root=dash_root, lock_timeout=30)
    with exp.run:  # waits for the holder to finish
        exp.metrics("train").log(step=1).flush()
    assert holder.wait() == 0
    assert [r["data"]["step"] for r in load(PREFIX, dash_root=dash_root).metrics("train").read()["data"]] \
        == [0, 0, 1]


# A child that exits through sys.exit runs the atexit hooks: it must not
# commit, close or unlock its parent's run.
FORK_EXIT = textwrap.dedent("""
    import os, sys, ml_dash
    exp = ml_dash.Experiment(prefix="w/fork-exit", dash_root=sys.argv[1])
    exp.run.start()
    exp.metrics("train").log(step=5)  # staged, not flushed
    pid = os.fork()
    if pid == 0:
        sys.exit(0)
    os.waitpid(pid, 0)
    try:
        ml_dash.Experiment(prefix="w/fork-exit", dash_root=sys.argv[1]).run.start()
        print("unlocked")
    except ml_dash.WriterLockedError:
        print("locked")
    print(ml_dash.load("w/fork-exit", dash_root=sys.argv[1]).status)
    exp.run.complete()
    print([r["data"]["step"] for r in exp.metrics("train").read()["data"]])
""")


def _worker(exp, dash_root, number, results):
    """What a DataLoader worker might do: read the parent's run, log to its own."""
    try:
        seen = len(exp.metrics("train"))
        viewed = len(load(PREFIX, dash_root=dash_root).metrics("train"))
        try:
            exp.metrics("train").log(step=-1)
            refused = "no error"
        except ExperimentError as exc:
            refused = str(exc)
        with Experiment(prefix=f"w/worker-{number}", dash_root=dash_root).run as own:
            own.metrics("batches").log(n=number).flush()
        results.put((seen, viewed, refused))
    except BaseException as exc:
        results.put(repr(exc))


def test_forked_children_read_safely_and_cannot_corrupt_the_parents_run(dash_root):
    exp = Experiment(prefix=PREFIX, dash_root=dash_root)
    exp.run.start()
    exp.metrics("train").log(step=0).flush()
    exp.metrics("train").log(step=1)  # staged in the parent at fork time
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_worker, args=(exp, dash_root, n, results)) for n in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join()
    for outcome in outcomes:
        seen, viewed, refused = outcome
        assert (seen, viewed) == (1, 1)
        assert "forked" in refused and str(os.getpid()) in refused
    assert subprocess.run([sys.executable, "-c", FORK_EXIT, dash_root], capture_output=True, timeout=60,
                          text=True).stdout.split() == ["locked", "RUNNING", "[5]"]
    exp.metrics("train").log(step=2).flush()
    assert exp.status == "RUNNING" and load(PREFIX, dash_root=dash_root).status == "RUNNING"
    exp.run.complete()
    assert [r["data"]["step"] for r in load(PREFIX, dash_root=dash_root).metrics("train").read()["data"]] \
        == [0, 1, 2]
    for n in range(2):
        assert load(f"w/worker-{n}", dash_root=dash_root).metrics("batches").read()["data"][0]["data"]["n"] == n
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok
