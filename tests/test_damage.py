"""Damaged and unusual store files: truncated, compacted, on a full disk.

Whatever happened to a run's files, opening, reading, checking and listing
it must end in an ``ml_dash`` error (or correct data), never in a signal:
each attack runs in a child process so that a SIGBUS or SIGABRT is seen as
a failure instead of killing the test run.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import lmdb
import pytest

import ml_dash
import ml_dash.storage.env as storage_env
import ml_dash.storage.registry as storage_registry
from ml_dash import Experiment, load
from ml_dash.storage.codec import PointDecoder, PointEncoder

PREFIX = "alice/proj/exp"
GOOD = "alice/proj/good"


def run_dir(dash_root, prefix=PREFIX):
    return os.path.join(dash_root, *prefix.split("/"))


def write_run(dash_root, prefix=PREFIX, points=200, text=""):
    with Experiment(prefix=prefix, dash_root=dash_root).run as exp:
        for i in range(points):
            exp.metrics("train").log(i=i, x=i * 0.5, text=text)
        exp.flush()


# Each attack is one line of output: the call, then "ok <result>" or the
# class of the exception it raised.  A signal kills the child and fails the test.
ATTACKS = textwrap.dedent("""
    import json, sys, ml_dash
    root, prefix = sys.argv[1], sys.argv[2]

    def attempt(name, call):
        try:
            print(name, "ok", json.dumps(call(), default=str), flush=True)
        except ml_dash.MLDashError as exc:
            print(name, type(exc).__name__, json.dumps(str(exc)), flush=True)

    def listing():
        return {run["prefix"]: (run["status"], run.get("error", "")) for run in ml_dash.list_experiments(root)}

    def start():
        with ml_dash.Experiment(prefix=prefix, dash_root=root).run as exp:
            exp.metrics("train").log(i=-1)
        return "started"

    def check(repair=False):
        report = ml_dash.check(prefix, dash_root=root, repair=repair)
        return [report.ok, report.problems]

    attempt("load", lambda: len(ml_dash.load(prefix, dash_root=root).metrics("train").read()["data"]))
    attempt("check", check)
    attempt("repair", lambda: check(repair=True))
    attempt("list", listing)
    attempt("start", start)
""")


def attack(dash_root, prefix=PREFIX):
    """``{call: (outcome, detail)}`` from running every call in a child process."""
    done = subprocess.run([sys.executable, "-c", ATTACKS, dash_root, prefix],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stdout}{done.stderr}"
    outcomes = {}
    for line in done.stdout.splitlines():
        name, outcome, detail = line.split(" ", 2)
        outcomes[name] = (outcome, json.loads(detail))
    return outcomes


@pytest.fixture
def tiny_map(monkeypatch):
    monkeypatch.setattr(storage_env, "INITIAL_MAP_SIZE", 64 << 10)


def test_a_compacted_run_larger_than_the_initial_map_opens_for_writing(tiny_map, dash_root):
    # With a 64 KB initial map, a 500 KB run stands for one of 90 MB against the real 64 MB.
    write_run(dash_root, points=500, text="y" * 1000)
    before, after = ml_dash.compact(PREFIX, dash_root=dash_root)
    assert after > 64 << 10
    for round in range(2):  # the raw MapFullError came every time
        with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
            exp.metrics("train").log(i=500 + round, x=0.0, text="z" * 5000).flush()
    assert len(load(PREFIX, dash_root=dash_root).metrics("train")) == 502
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok


def test_the_lock_file_is_created_fully_allocated(dash_root):
    # LMDB makes lock.mdb with ftruncate, a sparse file it then writes through
    # a map: on a full disk that is a SIGBUS.  ml_dash allocates it first.
    write_run(dash_root, points=3)
    lock = os.path.join(run_dir(dash_root), "lock.mdb")
    os.remove(lock)  # as after a copy of the run, or an older compact()
    with load(PREFIX, dash_root=dash_root) as view:
        assert len(view.metrics("train")) == 3
    st = os.stat(lock)
    # LMDB's reader table for 512 readers (32 KB and a header), every block of it allocated
    assert st.st_size >= 32768 and st.st_blocks * 512 >= st.st_size


def _can_mount_tmpfs(path, size):
    os.makedirs(path)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    path = str(tmp_path / "small")
    if not _can_mount_tmpfs(path, "2m"):
        pytest.skip("mounting a small tmpfs needs root")
    yield path
    subprocess.run(["umount", "-l", path], check=True)


def fill(disk):
    """Fill the filesystem at ``disk`` to the last byte."""
    fd = os.open(os.path.join(disk, "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_a_run_without_lock_file_on_a_really_full_disk(small_disk):
    dash_root = os.path.join(small_disk, "dash")
    write_run(dash_root, points=50)
    write_run(dash_root, prefix=GOOD, points=5)
    load(GOOD, dash_root=dash_root).close()  # its lock.mdb exists
    os.remove(os.path.join(run_dir(dash_root), "lock.mdb"))
    fill(small_disk)
    out = attack(dash_root)
    assert out["load"][0] == "StorageError" and "No space left" in out["load"][1]
    assert out["start"][0] == "StorageError"
    listed = out["list"][1]
    assert listed[PREFIX][0] == "UNREADABLE" and "lock.mdb" in listed[PREFIX][1]
    assert listed[GOOD] == ["COMPLETED", ""]
    os.remove(os.path.join(small_disk, "filler"))
    assert len(load(PREFIX, dash_root=dash_root).metrics("train")) == 50


def test_a_truncated_data_file_is_an_error_for_that_run_only(dash_root):
    write_run(dash_root, points=3000, text="t" * 50)
    write_run(dash_root, prefix=GOOD, points=5)
    data = os.path.join(run_dir(dash_root), "data.mdb")
    os.truncate(data, os.path.getsize(data) // 2)  # an interrupted copy
    out = attack(dash_root)
    for call in ("load", "start"):
        assert out[call][0] == "CorruptStoreError" and "truncated" in out[call][1], out[call]
    for call in ("check", "repair"):
        ok, problems = out[call][1]
        assert out[call][0] == "ok" and not ok and "truncated" in problems[0]
    listed = out["list"][1]
    assert listed[PREFIX][0] == "UNREADABLE" and "truncated" in listed[PREFIX][1]
    assert listed[GOOD] == ["COMPLETED", ""]
    ls = subprocess.run([sys.executable, "-m", "ml_dash", "ls", "--dash-root", dash_root],
                        capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0 and GOOD in ls.stdout and "UNREADABLE" in ls.stdout, ls.stderr


def put_raw(run_path, db_name, key, value):
    """Write ``value`` under ``key`` straight into LMDB, as damage on disk would."""
    storage_registry.release(storage_registry.acquire(run_path))  # nothing of it stays open here
    env = lmdb.open(run_path, max_dbs=8)
    try:
        with env.begin(write=True) as txn:
            txn.put(key, value, db=env.open_db(db_name, txn=txn))
    finally:
        env.close()


@pytest.mark.parametrize("record", [
    b"{not json", b'["a", "list"]', b'{"status": "COMPLETED", "createdAt": "yesterday"}',
    b'{"status": "COMPLETED", "startedAt": 1e300}', b'{"status": "RUNNING", "writer": [1, 2]}',
])
def test_a_damaged_experiment_record_makes_only_that_run_unreadable(dash_root, record):
    write_run(dash_root, points=3)
    write_run(dash_root, prefix=GOOD, points=5)
    put_raw(run_dir(dash_root), b"meta", b"experiment", record)
    listed = {run["prefix"]: run for run in ml_dash.list_experiments(dash_root)}
    assert listed[GOOD]["status"] == "COMPLETED" and listed[GOOD]["points"] == 5
    assert listed[PREFIX]["status"] == "UNREADABLE" and "experiment record" in listed[PREFIX]["error"]
    with pytest.raises(ml_dash.CorruptStoreError, match="experiment record"):
        load(PREFIX, dash_root=dash_root).info
    report = ml_dash.check(PREFIX, dash_root=dash_root)
    assert not report.ok and "experiment record" in report.problems[0]
    with pytest.warns(RuntimeWarning, match=f"left out {PREFIX}"):
        table = ml_dash.runs_table(dash_root=dash_root, to="numpy")
    assert set(table["run"]) == {GOOD}


def test_runs_table_leaves_out_a_run_deleted_while_it_is_built(dash_root, monkeypatch):
    for number in range(3):
        write_run(dash_root, prefix=f"alice/proj/run{number}", points=4)
    listing = ml_dash.analysis.listing.list_experiments

    def listed_then_one_deleted(*args, **kwargs):
        runs = listing(*args, **kwargs)
        shutil.rmtree(run_dir(dash_root, "alice/proj/run1"))  # by another process, a moment later
        return runs

    monkeypatch.setattr(ml_dash.analysis.listing, "list_experiments", listed_then_one_deleted)
    table = ml_dash.runs_table(dash_root=dash_root, to="numpy")
    assert sorted(set(table["run"])) == ["alice/proj/run0", "alice/proj/run2"]
    assert len(table["index"]) == 8


COMPACTOR = "import sys, ml_dash; ml_dash.compact(sys.argv[2], dash_root=sys.argv[1])"

FOLLOWER = textwrap.dedent("""
    import sys, time, ml_dash
    view = ml_dash.load(sys.argv[2], dash_root=sys.argv[1])
    print("opened", len(view.metrics("train")), flush=True)
    want = int(sys.stdin.readline())
    deadline = time.monotonic() + 10
    while len(view.metrics("train")) < want and time.monotonic() < deadline:
        time.sleep(0.01)
    print("saw", len(view.metrics("train")), flush=True)
""")


def readable(pipe, seconds):
    import select
    return bool(select.select([pipe], [], [], seconds)[0])


def stopped_in_the_middle_of_a_compaction(dash_root):
    """A compacting process SIGSTOPped while it writes its copy (None if never caught)."""
    copy = os.path.join(run_dir(dash_root), ".compacting", "data.mdb")
    for _ in range(5):
        compactor = subprocess.Popen([sys.executable, "-c", COMPACTOR, dash_root, PREFIX])
        deadline = time.monotonic() + 30
        while compactor.poll() is None and time.monotonic() < deadline:
            if os.path.exists(copy):
                compactor.send_signal(signal.SIGSTOP)
                return compactor
            time.sleep(0.0005)
        compactor.kill()
        compactor.wait()
    return None


def test_a_reader_that_opens_during_compaction_sees_what_is_written_after(dash_root):
    write_run(dash_root, points=300, text="c" * 100_000)  # 30 MB: a copy that takes a while
    compactor = stopped_in_the_middle_of_a_compaction(dash_root)
    assert compactor is not None, "never caught the compaction under way"
    try:
        follower = subprocess.Popen([sys.executable, "-c", FOLLOWER, dash_root, PREFIX],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        # It may not open the file that is being replaced: it waits inside its open.
        assert not readable(follower.stdout, 1.0)
    finally:
        compactor.send_signal(signal.SIGCONT)
    try:
        assert compactor.wait(timeout=60) == 0
        assert readable(follower.stdout, 30)
        assert follower.stdout.readline().split() == ["opened", "300"]
        with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
            for i in range(5):
                exp.metrics("train").log(i=300 + i, x=0.0, text="").flush()
        follower.stdin.write("305\n")
        follower.stdin.flush()
        assert readable(follower.stdout, 30)
        assert follower.stdout.readline().split() == ["saw", "305"]
        assert follower.wait(timeout=30) == 0
    finally:
        follower.kill()
        follower.wait()
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok


def rewrite_points(run_path, change):
    """Replace every stored point value ``v`` of the run with ``change(index, v)``."""
    storage_registry.release(storage_registry.acquire(run_path))
    env = lmdb.open(run_path, max_dbs=64)
    try:
        with env.begin(write=True) as txn:
            names = [key for key, _ in txn.cursor() if key.startswith(b"s:")]
            for name in names:
                db = env.open_db(name, txn=txn)
                for key, value in list(txn.cursor(db=db)):
                    txn.put(key, change(int.from_bytes(key, "big"), bytes(value)), db=db)
    finally:
        env.close()


def flip(value, at):
    return value[:at] + bytes([value[at] ^ 0x20]) + value[at + 1:]


@pytest.mark.parametrize("where", ["createdAt", "string"])
def test_a_damaged_point_is_a_corrupt_store_error_and_a_reported_problem(dash_root, where):
    write_run(dash_root, points=20, text="abcdef")

    def damage(index, value):
        if index != 5:
            return value
        # createdAt: the float64 right after the array head; string: a letter of "abcdef"
        return flip(value, 4) if where == "createdAt" else flip(value, value.index(b"abcdef") + 2)

    rewrite_points(run_dir(dash_root), damage)
    with load(PREFIX, dash_root=dash_root) as view:
        train = view.metrics("train")
        assert [r["data"]["i"] for r in train.read(0, 5)["data"]] == [0, 1, 2, 3, 4]
        with pytest.raises(ml_dash.CorruptStoreError, match="stream 'train', point 5.*checksum"):
            train.read(0, 10)
        with pytest.raises(ml_dash.CorruptStoreError, match="point 5"):
            train.commit_times()  # from the rows, fields not decoded
        assert list(train.column("i")) == list(range(20))  # columns are apart from rows
    report = ml_dash.check(PREFIX, dash_root=dash_root)
    assert not report.ok and "stream 'train': point 5 is damaged" in report.problems[0]


def test_a_format_1_store_is_read_and_appended_to_in_its_own_format(dash_root):
    write_run(dash_root, points=10)
    old, new = PointEncoder(1).pack, PointDecoder(2).decode
    rewrite_points(run_dir(dash_root), lambda index, value: old(new(value)))  # format 1: no checksum
    put_raw(run_dir(dash_root), b"meta", b"format", b"1")
    rows = load(PREFIX, dash_root=dash_root).metrics("train").read()["data"]
    assert [r["data"]["i"] for r in rows] == list(range(10))
    with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        exp.metrics("train").log(i=10, x=5.0, text="").flush()
    rows = load(PREFIX, dash_root=dash_root).metrics("train").read()["data"]
    assert [r["data"]["i"] for r in rows] == list(range(11))
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok


def test_check_of_a_live_run_does_not_call_a_save_under_way_a_leftover(dash_root):
    import uuid
    exp = Experiment(prefix=PREFIX, dash_root=dash_root)
    with exp.run:
        exp.metrics("train").log(i=0).flush()
        # A save between writing its contents and committing its record.
        os.makedirs(os.path.join(exp.path, "files"), exist_ok=True)
        with open(os.path.join(exp.path, "files", uuid.uuid4().hex), "wb") as contents:
            contents.write(b"weights")
        report = exp.check()
        assert report.ok, report.problems
        assert ml_dash.check(PREFIX, dash_root=dash_root).ok  # from outside too
    report = ml_dash.check(PREFIX, dash_root=dash_root)  # closed: a killed save's leftover
    assert not report.ok and "belongs to no file record" in report.problems[0]
    assert ml_dash.check(PREFIX, dash_root=dash_root, repair=True).ok
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok
