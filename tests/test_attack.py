"""Hostile interleavings and inputs found by attacking the public calls: each
test is a problem that once hung, crashed or broke a later call."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ml_dash
from ml_dash import Experiment, load


def run_script(script, *args, timeout=30):
    """Run ``script`` in a fresh interpreter; a hang fails the test, not the suite."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


FORK_WHILE_FLUSHING = """
    import os, sys, threading, time, ml_dash

    report, sys.stdout = sys.stdout, open(os.devnull, "w")  # the log lines printed

    exp = ml_dash.Experiment(prefix="a/fork", dash_root=sys.argv[1])
    exp.run.start()
    stop = False

    def flusher():  # holds the session's flush lock most of the time
        while not stop:
            exp.metrics("train").log(loss=1)
            exp.flush()

    def logger():  # holds the lock of exp.logs while it waits for the flush lock
        while not stop:
            exp.logs.log("from the parent", level="debug")
            exp.params.set(step=1)

    threads = [threading.Thread(target=flusher), threading.Thread(target=logger)]
    for thread in threads:
        thread.start()
    outcomes = []
    for _ in range(5):
        pid = os.fork()
        if pid == 0:
            code = 0
            for call in (lambda: exp.logs.info("from a child"), lambda: exp.params.set(child=1),
                         lambda: exp.metrics.log(step=1, eval=dict(loss=0.5))):
                try:
                    call()
                    code = 3  # staged where nobody will ever commit it
                except ml_dash.ExperimentError:
                    pass
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
    for thread in threads:
        thread.join()
    exp.run.complete()
    print(outcomes, file=report)
"""


def test_a_forked_child_logging_while_the_parent_flushes_is_refused_not_hung(dash_root):
    # The child inherits locks held by threads that do not exist there (the
    # session's flush lock, the lock of exp.logs or exp.params): staging a log
    # record or setting params waited for them forever.
    result = run_script(FORK_WHILE_FLUSHING, dash_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 0, 0, 0, 0]", result.stdout + result.stderr[-2000:]


INTERRUPTED_CLOSE = """
    import sys, threading, time, ml_dash

    exp = ml_dash.Experiment(prefix="a/interrupted", dash_root=sys.argv[1], sync_interval=0.05)
    exp.run.start()
    exp.metrics("train").log(step=0)
    time.sleep(0.5)  # long enough for its sync thread to have started
    join = threading.Thread.join

    def interrupted_join(thread, timeout=None):  # SIGTERM lands while close() waits
        join(thread, timeout)
        if thread.name.startswith("ml_dash") and "sync" in thread.name.lower():
            threading.Thread.join = join
            raise KeyboardInterrupt("SIGTERM")

    threading.Thread.join = interrupted_join
    try:
        exp.run.complete()
    except KeyboardInterrupt:
        print("interrupted")
    if len(sys.argv) > 2:  # go on in this process, as a notebook would
        with exp.run:
            exp.metrics("train").log(step=1)
    # at exit, or here by hand, the run is closed: no "store is closed"
"""


def test_a_close_interrupted_after_the_writer_closed_is_finished_at_exit(dash_root):
    # Ctrl-C or SIGTERM arriving while close() joined the sync thread left the
    # session with a closed writer: the exit (or a retried complete()) then
    # flushed into it and failed with "the store ... is closed", and the
    # process kept the run's environment open.
    result = run_script(INTERRUPTED_CLOSE, dash_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "interrupted", result.stdout + result.stderr
    assert "could not close" not in result.stderr, result.stderr
    view = ml_dash.load("a/interrupted", dash_root=dash_root)
    assert view.status in ("COMPLETED", "CANCELLED") and not view.stale
    assert len(view.metrics("train")) == 1
    view.close()
    assert ml_dash.check("a/interrupted", dash_root=dash_root).ok


def test_a_routed_dict_under_an_empty_name_takes_no_place_among_the_streams(exp):
    # It was refused, but only after it had been counted as a new stream:
    # the experiment's 1,000th stream was then refused.
    for attempt in range(3):
        with pytest.raises(ValueError, match="non-empty"):
            exp.metrics.log(step=attempt, **{"": {"loss": 0.5}})
    for number in range(1000):
        exp.metrics(f"s{number}")
    exp.metrics("s999").log(loss=1.0).flush()
    with pytest.raises(ml_dash.StreamLimitError):
        exp.metrics("one-more")
    assert exp.metrics.read()["total"] == 0  # nothing of the refused calls was staged


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), 1e300, -1.0])
def test_a_sync_interval_no_thread_can_wait_is_refused(dash_root, seconds):
    # NaN was taken: the sync thread then fsynced in a busy loop; inf and
    # 1e300 killed it with an OverflowError at its first wait.
    with pytest.raises(ml_dash.ConfigurationError, match="sync_interval"):
        ml_dash.Experiment(prefix="a/sync", dash_root=dash_root, sync_interval=seconds)


def test_a_flush_interval_no_thread_can_wait_is_refused(dash_root, monkeypatch):
    monkeypatch.setenv("ML_DASH_FLUSH_INTERVAL", "1e300")  # killed the timer thread
    with pytest.raises(ml_dash.ConfigurationError, match="ML_DASH_FLUSH_INTERVAL"):
        ml_dash.Experiment(prefix="a/timer", dash_root=dash_root).run.start()
    monkeypatch.setenv("ML_DASH_FLUSH_INTERVAL", "3600")
    with ml_dash.Experiment(prefix="a/timer", dash_root=dash_root).run as exp:
        exp.metrics("train").log(step=0)
    assert len(ml_dash.load("a/timer", dash_root=dash_root).metrics("train")) == 1


def _damage_catalog(run_path, change):
    """Apply ``change(txn, catalog_db)`` to the catalog straight in LMDB, as damage would."""
    import lmdb
    env = lmdb.open(run_path, max_dbs=8)
    try:
        with env.begin(write=True) as txn:
            change(txn, env.open_db(b"catalog", txn=txn))
            txn.put(b"catalog_version", b"damaged", db=env.open_db(b"meta", txn=txn))
    finally:
        env.close()


def _first(txn, db, prefix):
    return next(key for key, _ in txn.cursor(db=db) if key[:1] == prefix)


CATALOG_DAMAGE = {
    "not json": lambda txn, db: txn.put(_first(txn, db, b"s"), b"\xff{", db=db),
    "a list": lambda txn, db: txn.put(_first(txn, db, b"s"), b"[1]", db=db),
    "no name": lambda txn, db: txn.put(_first(txn, db, b"s"), b"{}", db=db),
    "a number as name": lambda txn, db: txn.put(_first(txn, db, b"s"), b'{"name": 5}', db=db),
    "a name twice": lambda txn, db: txn.put(b"s\x00\x00\x00\x63", txn.get(_first(txn, db, b"s"), db=db), db=db),
    "a short key": lambda txn, db: txn.put(b"s\x01", b'{"name": "x"}', db=db),
    "a column of no stream": lambda txn, db: txn.put(b"c\x7f\x7f\x7f\x7f" + bytes(4), b"x", db=db),
    "a column name not text": lambda txn, db: txn.put(_first(txn, db, b"c"), b"\xff\xfe", db=db),
}


@pytest.mark.parametrize("damage", sorted(CATALOG_DAMAGE))
def test_a_damaged_catalog_is_a_corrupt_store_for_that_run_only(dash_root, damage):
    # A catalog record that was not one ml_dash writes raised KeyError,
    # TypeError, UnicodeDecodeError or struct.error from load(), check(), a
    # writer, and from list_experiments() for every run under the root.
    for prefix in ("a/good", "a/damaged"):
        with ml_dash.Experiment(prefix=prefix, dash_root=dash_root).run as exp:
            exp.metrics("train").log(i=1, x=0.5)
    run_path = ml_dash.Experiment(prefix="a/damaged", dash_root=dash_root).path
    _damage_catalog(run_path, CATALOG_DAMAGE[damage])
    with pytest.raises(ml_dash.CorruptStoreError, match="catalog"):
        ml_dash.load("a/damaged", dash_root=dash_root).metrics("train").read()
    with pytest.raises(ml_dash.CorruptStoreError, match="catalog"):
        ml_dash.Experiment(prefix="a/damaged", dash_root=dash_root).run.start()
    report = ml_dash.check("a/damaged", dash_root=dash_root)
    assert not report.ok and report.problems
    runs = {run["prefix"]: run["status"] for run in ml_dash.list_experiments(dash_root=dash_root)}
    assert runs == {"a/good": "COMPLETED", "a/damaged": "UNREADABLE"}
    with ml_dash.Experiment(prefix="a/good", dash_root=dash_root).run as exp:
        exp.metrics("train").log(i=2)
    assert len(ml_dash.load("a/good", dash_root=dash_root).metrics("train")) == 2


@pytest.mark.parametrize("watermark", [b"{x", b"[1]", b'{"1": "a"}', b'{"1": -5}', b'{"1": 2.5}'])
def test_a_damaged_watermark_costs_a_rebuild_of_the_columns_not_the_run(dash_root, watermark):
    # check() said the run was fine, but every writer failed to open it with
    # a JSONDecodeError, AttributeError, TypeError or struct.error.
    with ml_dash.Experiment(prefix="a/mark", dash_root=dash_root).run as exp:
        for i in range(5):
            exp.metrics("train").log(i=i)
    run_path = ml_dash.Experiment(prefix="a/mark", dash_root=dash_root).path
    import lmdb
    env = lmdb.open(run_path, max_dbs=8)
    with env.begin(write=True) as txn:
        txn.put(b"watermark", watermark, db=env.open_db(b"meta", txn=txn))
    env.close()
    with ml_dash.Experiment(prefix="a/mark", dash_root=dash_root).run as exp:
        exp.metrics("train").log(i=5)
    with ml_dash.load("a/mark", dash_root=dash_root) as view:
        assert list(view.metrics("train").column("i")) == [0, 1, 2, 3, 4, 5]
    assert ml_dash.check("a/mark", dash_root=dash_root).ok


@pytest.mark.parametrize("key", [b"abc", b"\xff" * 9, b"\x7f" + b"\xff" * 7])
def test_a_point_key_that_is_no_index_is_a_corrupt_store_and_check_reports_it(dash_root, key):
    # A last key of another length raised struct.error from len(), read(),
    # column(), a writer and list_experiments() (for every run), and check()
    # called the run sound; a key of 2**63 raised OverflowError from len().
    for prefix in ("a/good", "a/damaged"):
        with ml_dash.Experiment(prefix=prefix, dash_root=dash_root).run as exp:
            for i in range(5):
                exp.metrics("train").log(i=i)
    run_path = ml_dash.Experiment(prefix="a/damaged", dash_root=dash_root).path
    import lmdb
    env = lmdb.open(run_path, max_dbs=8)
    with env.begin(write=True) as txn:
        name = next(k for k, _ in txn.cursor() if k.startswith(b"s:"))
        db = env.open_db(name, txn=txn)
        txn.put(key, txn.get(bytes(8), db=db), db=db)
    env.close()
    with ml_dash.load("a/damaged", dash_root=dash_root) as view:
        for call in (lambda: len(view.metrics("train")), lambda: view.metrics("train").read(),
                     lambda: view.metrics("train").column("i")):
            with pytest.raises(ml_dash.CorruptStoreError, match="not an index"):
                call()
    with pytest.raises(ml_dash.CorruptStoreError):
        ml_dash.Experiment(prefix="a/damaged", dash_root=dash_root).run.start()
    report = ml_dash.check("a/damaged", dash_root=dash_root)
    assert not report.ok and "point indices jump from 4" in report.problems[0]
    runs = {run["prefix"]: run["status"] for run in ml_dash.list_experiments(dash_root=dash_root)}
    assert runs == {"a/good": "COMPLETED", "a/damaged": "UNREADABLE"}


def test_the_copy_a_killed_compaction_left_is_no_run_nested_in_the_run(dash_root):
    # compact() killed during its copy leaves .compacting/data.mdb; the run
    # was then refused by every Experiment ("its folder already holds the run
    # 'a/run/.compacting'") until someone thought of compacting it again.
    import shutil
    with ml_dash.Experiment(prefix="a/run", dash_root=dash_root).run as exp:
        exp.metrics("train").log(i=0)
    run_path = ml_dash.Experiment(prefix="a/run", dash_root=dash_root).path
    os.makedirs(os.path.join(run_path, ".compacting"))
    shutil.copy(os.path.join(run_path, "data.mdb"), os.path.join(run_path, ".compacting"))
    with ml_dash.Experiment(prefix="a/run", dash_root=dash_root).run as exp:
        exp.metrics("train").log(i=1)
    assert [run["prefix"] for run in ml_dash.list_experiments(dash_root=dash_root)] == ["a/run"]
    assert ml_dash.check("a/run", dash_root=dash_root).ok
    ml_dash.compact("a/run", dash_root=dash_root)
    assert not os.path.exists(os.path.join(run_path, ".compacting"))
    assert len(ml_dash.load("a/run", dash_root=dash_root).metrics("train")) == 2


def test_a_run_started_again_after_an_interrupted_close_stores_its_points(dash_root):
    # start() did nothing while the interrupted session was still there: every
    # later log() went into its closed writer and every flush failed.
    result = run_script(INTERRUPTED_CLOSE, dash_root, "again")
    assert result.returncode == 0, result.stderr
    with ml_dash.load("a/interrupted", dash_root=dash_root) as view:
        assert view.status == "COMPLETED"
        assert list(view.metrics("train").column("step")) == [0, 1]


def test_the_command_line_names_an_output_path_it_cannot_write(dash_root, capsys):
    # A traceback (FileNotFoundError of "run.csv.partial") instead of an error line.
    from ml_dash.cli import main
    with ml_dash.Experiment(prefix="a/cli", dash_root=dash_root).run as exp:
        exp.metrics("train").log(i=0)
    code = main(["export", "a/cli", "-o", "/nonexistent-folder/run.csv", "--dash-root", dash_root])
    assert code == 1
    assert "ml-dash export: error:" in capsys.readouterr().err


def test_a_view_closed_while_another_thread_reads_it_gives_that_thread_a_storage_error(dash_root):
    # The reading thread got py-lmdb's own "Attempt to operate on
    # closed/deleted/dropped object" (lmdb.Error), no ml_dash error.
    import threading
    with ml_dash.Experiment(prefix="a/closed", dash_root=dash_root).run as exp:
        for i in range(500):
            exp.metrics("train").log(i=i, text="x" * 50)
    unexpected = []
    for _ in range(30):
        view = ml_dash.load("a/closed", dash_root=dash_root)
        started = threading.Event()

        def read():
            for _ in range(200):
                try:
                    view.metrics("train").read(0, 200)
                    view.params.get()
                except ml_dash.StorageError:
                    pass
                except Exception as exc:  # noqa: BLE001 - what is being tested
                    unexpected.append(repr(exc))
                started.set()

        thread = threading.Thread(target=read)
        thread.start()
        started.wait(5)
        view.close()
        thread.join(10)
    assert unexpected == []
    assert len(ml_dash.load("a/closed", dash_root=dash_root).metrics("train")) == 500


def test_a_thread_loading_the_run_while_another_compacts_it_waits(dash_root):
    # LMDB's lock byte keeps other processes out of a compaction but not other
    # threads: a load() then opened the file being replaced, and compaction or
    # the load failed with "The environment ... is already open in this process"
    # (after the rename, leaving lock.mdb unrebuilt under an open reader).
    import threading
    with ml_dash.Experiment(prefix="a/compacted", dash_root=dash_root).run as exp:
        for i in range(3000):
            exp.metrics("train").log(i=i, text="x" * 100)
    stop = threading.Event()
    failures = []

    def loader():
        while not stop.is_set():
            try:
                with ml_dash.load("a/compacted", dash_root=dash_root) as view:
                    if len(view.metrics("train")) != 3000:
                        failures.append("count")
            except Exception as exc:  # noqa: BLE001 - what is being tested
                failures.append(repr(exc))

    thread = threading.Thread(target=loader)
    thread.start()
    try:
        compacted = 0
        for _ in range(15):
            try:
                ml_dash.compact("a/compacted", dash_root=dash_root)
                compacted += 1
            except ml_dash.ExperimentError as exc:  # the loader had it open: refused, fine
                assert "this process has it open" in str(exc)
            except Exception as exc:  # noqa: BLE001
                failures.append(repr(exc))
    finally:
        stop.set()
        thread.join(30)
    assert failures == []
    assert compacted > 0
    assert ml_dash.check("a/compacted", dash_root=dash_root).ok
    with ml_dash.Experiment(prefix="a/compacted", dash_root=dash_root).run as exp:
        exp.metrics("train").log(i=3000)
    assert len(ml_dash.load("a/compacted", dash_root=dash_root).metrics("train")) == 3001


def test_a_buffered_value_whose_float_raises_keeps_nothing_of_the_call(exp):
    # Its exception left the fast path with the call's earlier values kept.
    class Unconvertible:
        def __float__(self):
            raise RuntimeError("device lost")

    with pytest.raises(ValueError, match="'bad'"):
        exp.metrics("train").buffer(loss=1.0, bad=Unconvertible())
    exp.metrics("train").buffer(loss=3.0)
    exp.metrics.buffer.log_summary("mean", "count")
    exp.flush()
    point = exp.metrics("train").read()["data"][0]["data"]
    assert point["loss.mean"] == 3.0 and point["loss.count"] == 1


def test_a_fifo_in_place_of_a_column_is_an_error_not_a_hang(dash_root):
    # check() opened the column with a plain O_RDONLY and waited forever for a
    # writer of the FIFO; a FIFO in place of a stream's column folder made the
    # writer raise NotADirectoryError.
    script = """
        import glob, os, shutil, sys, ml_dash
        root = sys.argv[1]
        for prefix in ("a/column", "a/folder"):
            with ml_dash.Experiment(prefix=prefix, dash_root=root).run as exp:
                exp.metrics("train").log(i=1)
        column = sorted(glob.glob(os.path.join(root, "a/column/columns/*/*.f64")))[0]
        os.remove(column)
        os.mkfifo(column)
        folder = sorted(glob.glob(os.path.join(root, "a/folder/columns/*")))[0]
        shutil.rmtree(folder)
        os.mkfifo(folder)
        for prefix in ("a/column", "a/folder"):
            print(ml_dash.check(prefix, dash_root=root).ok)
            try:
                ml_dash.Experiment(prefix=prefix, dash_root=root).run.start()
            except ml_dash.StorageError:
                print("refused")
    """
    result = run_script(script, dash_root, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "refused", "False", "refused"], result.stdout


@pytest.mark.parametrize("call", [
    lambda s: s.read(start_index=None),
    lambda s: s.read(limit=None),
    lambda s: s.read(start_index=1.5),
    lambda s: s.read(limit="10"),
    lambda s: s.read(start_index=True),
    lambda s: s.column("x", start="0"),
    lambda s: s.columns("x", stop=2.0),
    lambda s: s.index_range("a", 1),
    lambda s: s.index_range(0, [1]),
])
def test_read_arguments_of_the_wrong_type_are_named(dash_root, call):
    with Experiment(prefix="a/args", dash_root=dash_root).run as exp:
        exp.metrics("train").log(x=1.0, _ts=1.0).log(x=2.0, _ts=2.0).flush()
    with load("a/args", dash_root=dash_root) as view:
        stream = view.metrics("train")
        with pytest.raises(TypeError, match=r"(start_index|limit|start|stop|low|high) must be"):
            call(stream)
        assert stream.read(start_index=np.int64(1), limit=np.int32(1))["data"][0]["data"]["x"] == 2.0
        assert stream.index_range(np.float64(1.5), 3) == (1, 2)
        with pytest.raises(ValueError, match="limit must be >= 0"):
            stream.read(limit=-1)


def test_the_command_line_refuses_a_negative_tail(dash_root):
    with Experiment(prefix="a/tail", dash_root=dash_root).run as exp:
        exp.metrics("train").log(x=1.0).flush()
    done = subprocess.run([sys.executable, "-m", "ml_dash", "read", "a/tail", "train", "--tail", "-5",
                           "--dash-root", dash_root], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "expected a number >= 0" in done.stderr, done


LOCK_HELD_AT_FORK = """
    import os, sys, ml_dash
    import ml_dash.experiment as experiment_module

    exp = ml_dash.Experiment(prefix="a/forklocks", dash_root=sys.argv[1])
    exp.run.start()
    exp.metrics("train").log(loss=1).flush()
    # As if another thread of the parent were inside them at the moment of the fork.
    held = {"stream limit": exp.metrics._admit_lock, "open runs": experiment_module._open_lock}
    for lock in held.values():
        lock.acquire()
    pid = os.fork()
    if pid == 0:
        try:
            exp.metrics("new-in-child")  # counted against the stream limit in the parent
        finally:
            sys.exit(0)  # runs the exit handler, which closes this process's runs
    for lock in held.values():
        lock.release()
    _, status = os.waitpid(pid, 0)
    exp.run.complete()
    print(os.waitstatus_to_exitcode(status))
"""


def test_locks_held_by_parent_threads_at_a_fork_do_not_hang_the_child(dash_root):
    done = run_script(LOCK_HELD_AT_FORK, dash_root, timeout=30)
    assert done.stdout.strip() == "0", (done.stdout, done.stderr[-2000:])


def test_a_log_page_past_every_index_and_a_downsample_count_that_is_not_a_number(dash_root):
    with Experiment(prefix="a/huge", dash_root=dash_root).run as exp:
        exp.metrics("train").log(x=1.0).log(x=2.0).flush()
        exp.logs.info("hello")
    with load("a/huge", dash_root=dash_root) as view:
        assert view.logs.read(start_index=2**70)["data"] == []  # was struct.error
        assert view.metrics("train").read(start_index=2**70)["data"] == []
        for n in ("5", 2.5, True):
            with pytest.raises(TypeError, match="n must be a whole number"):
                view.metrics("train").column("x", downsample=n)
        assert len(view.metrics("train").column("x", downsample=np.int64(2))) == 2
