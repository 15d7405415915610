"""Faults: full map, full disk, I/O errors and unknown formats.

The promise: a ``StorageError`` naming the path, everything committed before
intact, and the failed snapshot still staged so that a retry (after space
was freed) commits it exactly once.  Disk-full and I/O errors are injected
at the OS call through ``ML_DASH_FAULT`` points (``ml_dash.storage.faults``);
where the machine allows mounting a small tmpfs, a really full disk too.
"""

import errno
import os
import subprocess
import sys
import warnings

import lmdb
import numpy as np
import pytest

import ml_dash
import ml_dash.storage.env as storage_env
import ml_dash.storage.registry as storage_registry
from ml_dash import Experiment, StorageError, load
from ml_dash.errors import FormatVersionError
from ml_dash.storage import faults

PREFIX = "alice/proj/exp"


@pytest.fixture
def fault():
    """Arm a fault point for the test; disarmed afterwards, as when space is freed."""
    yield faults.configure
    faults.configure(None)


@pytest.fixture
def tiny_map(monkeypatch):
    monkeypatch.setattr(storage_env, "INITIAL_MAP_SIZE", 64 << 10)


def stored(dash_root, stream="train"):
    view = load(PREFIX, dash_root=dash_root)
    try:
        return [row["data"]["i"] for row in view.metrics(stream).read(limit=100_000)["data"]]
    finally:
        view.close()


def log_points(exp, start, stop, text=""):
    for i in range(start, stop):
        exp.metrics("train").log(i=i, x=i * 0.5, text=text)
        exp.metrics("eval").log(i=i)


def assert_retry_commits_once(exp, dash_root, expected, extra=()):
    exp.flush()
    assert stored(dash_root) == expected + list(extra)
    assert stored(dash_root, "eval") == expected
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok


def test_map_full_grows_and_commits_the_whole_snapshot(tiny_map, exp, dash_root):
    view = load(PREFIX, dash_root=dash_root)
    log_points(exp, 0, 3000, text="y" * 200)  # about 1 MB in one snapshot: many doublings
    exp.flush()
    assert len(view.metrics("train")) == 3000  # a reader opened before the growth follows it
    assert stored(dash_root) == list(range(3000))
    assert os.path.getsize(os.path.join(exp.path, "data.mdb")) > 64 << 10


GROWTH_WITH_READER_THREADS = """
import sys, threading
import ml_dash.storage.env as storage_env
import ml_dash.storage.registry as storage_registry
storage_env.INITIAL_MAP_SIZE = 64 << 10
from ml_dash import Experiment, load

exp = Experiment(prefix="a/b", dash_root=sys.argv[1])
exp.run.start()
exp.metrics("train").log(i=0).flush()
done, errors, reads = threading.Event(), [], []

def read_in_a_loop():
    view = load("a/b", dash_root=sys.argv[1])  # shares the writer's environment
    while not done.is_set():
        try:
            assert view.metrics("train").read(limit=20)["data"][0]["data"]["i"] == 0
            reads.append(len(view.metrics("train")))
        except Exception as exc:
            errors.append(repr(exc))
            return

threads = [threading.Thread(target=read_in_a_loop) for _ in range(3)]
for thread in threads:
    thread.start()
for step in range(1, 3000):
    exp.metrics("train").log(i=step, text="y" * 400)
    if step % 50 == 0:
        exp.flush()
exp.run.complete()
done.set()
for thread in threads:
    thread.join()
print(len(reads), errors)
"""


def test_map_growth_while_threads_of_the_writer_process_read(tmp_path):
    # Each doubling must wait for the reads in flight and hold new ones back:
    # py-lmdb invalidates open transactions when the map changes, and the
    # abort of the full transaction waits for every LMDB call in the process.
    script = tmp_path / "grow.py"
    script.write_text(GROWTH_WITH_READER_THREADS)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "dash")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    reads, errors = done.stdout.split(" ", 1)
    assert int(reads) > 0 and errors.strip() == "[]"
    view = load("a/b", dash_root=str(tmp_path / "dash"))
    assert view.metrics("train").column("i").tolist() == list(range(3000))
    assert os.path.getsize(tmp_path / "dash" / "a" / "b" / "data.mdb") > 1 << 20


def test_map_growth_failure_keeps_the_snapshot_staged(tiny_map, fault, exp, dash_root):
    log_points(exp, 0, 10)
    exp.flush()
    log_points(exp, 10, 3000, text="y" * 200)
    fault("map_growth:enospc")
    with pytest.raises(StorageError, match="map of the store at .*exp.*No space left") as info:
        exp.flush()
    assert info.value.__cause__.errno == errno.ENOSPC
    assert stored(dash_root) == list(range(10))  # all or nothing
    fault(None)
    assert_retry_commits_once(exp, dash_root, list(range(3000)))


@pytest.mark.parametrize("spec, where", [
    ("column_growth:enospc", "column file .*columns"),
    ("column_growth:eio", "column file .*columns"),
    ("before_commit:enospc", "commit to the store at .*exp"),
    ("before_commit:eio", "commit to the store at .*exp"),
])
def test_disk_errors_while_flushing(fault, exp, dash_root, spec, where):
    log_points(exp, 0, 4000)  # column capacity is 4096: the next flush grows every column
    exp.flush()
    log_points(exp, 4000, 4200)
    exp.metrics("train").log(i=-1, new_key=1.0)  # and creates a column
    fault(spec)
    for _ in range(2):  # failing again and again changes nothing
        with pytest.raises(StorageError, match=where):
            exp.flush()
        assert stored(dash_root) == list(range(4000))
    fault(None)
    assert_retry_commits_once(exp, dash_root, list(range(4200)), extra=[-1])


def test_fsync_failure_after_the_commit_does_not_duplicate_points(fault, dash_root):
    exp = Experiment(prefix=PREFIX, dash_root=dash_root, sync_interval=0)  # fsync every flush
    with exp.run:
        log_points(exp, 0, 5)
        exp.flush()
        log_points(exp, 5, 8)
        fault("sync:eio")
        with pytest.raises(StorageError, match="sync the store at .*exp"):
            exp.flush()
        fault(None)
        assert_retry_commits_once(exp, dash_root, list(range(8)))


def test_unknown_format_version_is_refused(exp, dash_root):
    exp.metrics("train").log(i=0).flush()
    exp.run.complete()
    storage_registry.release(storage_registry.acquire(exp.path))  # nothing of it stays open here
    env = lmdb.open(exp.path, max_dbs=8)
    with env.begin(write=True) as txn:
        txn.put(b"format", b"99", db=env.open_db(b"meta", txn=txn))
    env.close()
    for open_it in (lambda: load(PREFIX, dash_root=dash_root),
                    lambda: Experiment(prefix=PREFIX, dash_root=dash_root).run.start()):
        with pytest.raises(FormatVersionError, match="format 99.*upgrade ml_dash"):
            open_it()
    assert not ml_dash.check(PREFIX, dash_root=dash_root).ok
def _can_mount_tmpfs(path):
    os.makedirs(path)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", path],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MB filesystem, or skip when this machine does not allow mounting one."""
    path = str(tmp_path / "small")
    if not _can_mount_tmpfs(path):
        pytest.skip("mounting a small tmpfs needs root")
    yield path
    subprocess.run(["umount", "-l", path], check=True)


def test_really_full_disk_while_committing_rows(small_disk):
    """Fill a real small filesystem: the failure is a StorageError, the retry succeeds."""
    dash_root = os.path.join(small_disk, "dash")
    filler = os.path.join(small_disk, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * (1 << 20))
    exp = Experiment(prefix=PREFIX, dash_root=dash_root)
    exp.run.start()
    i, error = 0, None
    while error is None and i < 200_000:
        for _ in range(200):
            exp.metrics("train").log(i=i, text="z" * 400)
            exp.metrics("eval").log(i=i)
            i += 1
        try:
            exp.flush()
        except StorageError as exc:
            error = exc
    assert error is not None, "the disk never filled"
    assert small_disk in str(error) and "no space left" in str(error).lower()
    committed = stored(dash_root)
    assert committed == list(range(len(committed))) and len(committed) < i
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok
    os.remove(filler)  # free space: the staged snapshot now commits
    exp.flush()
    exp.run.complete()
    assert stored(dash_root) == list(range(i))
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok
    assert np.array_equal(load(PREFIX, dash_root=dash_root).metrics("train").column("i"), np.arange(i))


def test_really_full_disk_while_creating_columns(small_disk):
    dash_root = os.path.join(small_disk, "dash")
    filler = os.path.join(small_disk, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * (2 << 20))
    with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        log_points(exp, 0, 100)
        exp.flush()
        wide = {f"k{c}": float(c) for c in range(400)}  # 400 new columns of 4 KB each
        exp.metrics("train").log(i=100, **wide)
        exp.metrics("eval").log(i=100)
        with pytest.raises(StorageError, match="column file .*small.*No space left"):
            exp.flush()
        assert stored(dash_root) == list(range(100))
        assert ml_dash.check(PREFIX, dash_root=dash_root).ok
        os.remove(filler)
        exp.flush()
    assert stored(dash_root) == list(range(101))
    view = load(PREFIX, dash_root=dash_root)
    assert view.metrics("train").column("k399")[100] == 399.0 and np.isnan(view.metrics("train").column("k399")[99])
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_disk_full_while_creating_a_stream_or_its_columns(fault, exp, dash_root, nth):
    log_points(exp, 0, 3)
    exp.flush()
    exp.metrics("fresh").log(a=1.0, b=2.0)  # new stream: its _ts, a and b columns are created
    fault(f"column_growth:enospc:{nth}")
    with pytest.raises(StorageError, match="column file"):
        exp.flush()
    fault(None)
    exp.flush()
    assert exp.metrics("fresh").read()["data"][0]["data"]["b"] == 2.0
    assert list(exp.metrics("fresh").column("b")) == [2.0]
    exp.run.complete()
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok


def test_a_store_on_a_network_filesystem_is_warned_about(small_disk, monkeypatch, dash_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a local disk: no warning
        with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
            exp.metrics("train").log(i=0)
    # the small tmpfs stands in for an NFS mount: detection reads the real mount table
    monkeypatch.setattr(storage_registry, "NETWORK_FILESYSTEMS", frozenset({"tmpfs"}))
    with pytest.warns(RuntimeWarning, match=r"network filesystem \(tmpfs\).*local disk"):
        with Experiment(prefix=PREFIX, dash_root=os.path.join(small_disk, "dash")).run as exp:
            exp.metrics("train").log(i=0)
