"""Small runs cost about what their data does: on disk, in threads, and while they grow.

Sweeps and benchmark harnesses make thousands of runs of a few hundred
points; ``bench/scale_runs.py`` measures what one costs beside the raw LMDB
floor.  These tests check the behaviours behind its figures on the files a
run leaves and on the threads it starts, not on timings.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ml_dash import Experiment, load

PAGE = 4096
BENCH = Path(__file__).resolve().parent.parent / "bench"
OWN_THREADS = ("ml_dash sync", "ml_dash timed commit")


def sweep_run(dash_root, name, points):
    with Experiment(prefix=f"sweep/small/{name}", dash_root=dash_root).run as exp:
        for step in range(points):
            exp.metrics("train").log(loss=1.0 / (step + 1), acc=step / points)
    return os.path.join(dash_root, "sweep", "small", name)


def files_of(folder):
    """``{path relative to folder: (apparent bytes, allocated bytes)}``."""
    out = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            st = os.lstat(os.path.join(directory, name))
            out[os.path.relpath(os.path.join(directory, name), folder)] = (st.st_size, st.st_blocks * 512)
    return out


def pages(size):
    return -(-size // PAGE) * PAGE


@pytest.mark.parametrize("points", [100, 1000])
def test_a_small_runs_folder_costs_about_what_its_data_does(dash_root, points):
    files = files_of(sweep_run(dash_root, "run", points))
    columns = {path: size for path, size in files.items() if path.startswith("columns")}
    assert len(columns) == 3  # _ts, loss, acc
    for apparent, allocated in columns.values():
        # one float64 slot per point, in a file at most twice its data and a page at least
        assert apparent <= max(PAGE, 2 * 8 * points) and allocated <= pages(apparent)
    lock_apparent, lock_allocated = files["lock.mdb"]
    assert lock_apparent <= 9 * PAGE and lock_allocated <= 9 * PAGE  # LMDB's table of 512 readers
    assert files["writer.lock"][0] < 100
    # A point's row is about 70 bytes (key, MessagePack of commit time, _ts and
    # two floats, checksum, LMDB's node header); the rest of the data file is a
    # dozen pages at most (two meta pages, the sub-databases' roots, free pages).
    data_apparent, data_allocated = files["data.mdb"]
    assert data_apparent <= 12 * PAGE + 2 * 70 * points and data_allocated <= pages(data_apparent)
    with load("sweep/small/run", dash_root=dash_root) as view:
        assert np.array_equal(view.metrics("train").column("acc"), np.arange(points) / points)


READER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import ml_dash
    root, total = sys.argv[1], int(sys.argv[2])
    polls, lengths = 0, set()
    with ml_dash.load("small/grow", dash_root=root) as view:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            column = view.metrics("train").column("i")
            assert np.array_equal(column, np.arange(len(column))), len(column)
            polls += 1
            lengths.add(len(column))
            if polls == 1:
                print("ready", flush=True)
            if len(column) == total:
                break
    print(polls, len(lengths), max(lengths))
""")


def test_a_column_that_starts_small_grows_while_another_process_reads_it(dash_root):
    total = 5000
    column = os.path.join(dash_root, "small", "grow", "columns", "1", "1.f64")  # stream 1, key "i"
    with Experiment(prefix="small/grow", dash_root=dash_root).run as exp:
        train = exp.metrics("train")
        train.log(i=0).flush()
        assert os.path.getsize(column) == PAGE  # one page to begin with
        reader = subprocess.Popen([sys.executable, "-c", READER, dash_root, str(total)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert reader.stdout.readline().strip() == "ready"
        sizes = set()
        for i in range(1, total):
            train.log(i=i)
            if i % 37 == 0:
                train.flush()
                sizes.add(os.path.getsize(column))
                time.sleep(0.002)  # let the reader poll between flushes
        train.flush()
        out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err[-3000:]
    polls, lengths, last = map(int, out.split())
    assert last == total and lengths > 3, out  # it saw the column at several lengths
    assert {PAGE * 2, PAGE * 4, PAGE * 8} <= sizes  # it doubled on the way, under the reader
    assert os.path.getsize(column) <= 2 * 8 * total
    with load("small/grow", dash_root=dash_root) as view:
        assert np.array_equal(view.metrics("train").column("i"), np.arange(total))


def own_threads():
    return [thread.name for thread in threading.enumerate() if thread.name.startswith(OWN_THREADS)]


def test_runs_closed_within_a_second_start_no_thread_of_their_own(dash_root):
    assert own_threads() == []
    for number in range(20):
        with Experiment(prefix=f"sweep/quick/{number}", dash_root=dash_root).run as exp:
            exp.metrics("train").log(loss=1.0)
            assert own_threads() == []
    assert own_threads() == []
    with load("sweep/quick/19", dash_root=dash_root) as view:
        assert view.metrics("train").column("loss").tolist() == [1.0]


def test_a_run_that_stays_open_gets_its_sync_and_its_timed_commit(dash_root):
    # The sync is due one sync_interval after the open, the timer's first look
    # one quarter of ML_DASH_FLUSH_INTERVAL (default 5 s) after it.
    with Experiment(prefix="sweep/long", dash_root=dash_root, sync_interval=0.2).run as exp:
        exp.metrics("train").log(loss=1.0)
        deadline = time.monotonic() + 10
        while len(own_threads()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        names = own_threads()
        assert any(name.startswith("ml_dash sync") for name in names), names
        assert any(name.startswith("ml_dash timed commit") for name in names), names
        deadline = time.monotonic() + 10  # the timer commits what stays staged
        with load("sweep/long", dash_root=dash_root) as view:
            while not len(view.metrics("train")) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert view.metrics("train").column("loss").tolist() == [1.0]
    assert own_threads() == []  # joined by close


def test_scale_runs_benchmark_smoke_run(tmp_path):
    page = tmp_path / "scale.md"
    done = subprocess.run([sys.executable, str(BENCH / "scale_runs.py"), "--runs", "6", "--rounds", "2",
                           "--points", "10", "--traced", "2", "--dir", str(tmp_path), "--write", str(page)],
                          check=True, capture_output=True, text=True, timeout=120)
    totals, by_file = (
        [line for line in part.splitlines() if line.startswith("| 10 |")]
        for part in page.read_text().split("Allocated per run, by file"))
    assert [row.split("|")[2].strip() for row in totals] == ["ml_dash", "raw LMDB floor"], done.stdout
    assert [row.split("|")[2].strip() for row in by_file] == ["ml_dash", "raw LMDB floor"], done.stdout
    for row, files in zip(totals, by_file):
        ms, allocated, apparent = (float(cell) for cell in row.split("|")[3:6])
        assert ms > 0 and allocated > 0 and apparent > 0
        assert sum(float(cell) for cell in files.split("|")[3:-1]) == pytest.approx(allocated, abs=0.2)
    assert list(tmp_path.iterdir()) == [page]  # the runs it made are gone


def test_a_run_left_open_at_exit_is_closed_and_synced(dash_root):
    # Its close runs while the interpreter exits, when some thread pools no
    # longer take work: the columns and the data file must still be synced.
    script = textwrap.dedent(f"""
        import ml_dash
        exp = ml_dash.Experiment(prefix="sweep/left-open", dash_root={dash_root!r})
        exp.run.start()
        for step in range(10):
            exp.metrics("train").log(loss=1.0 / (step + 1), acc=0.5)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "could not close" not in done.stderr, done.stderr
    with load("sweep/left-open", dash_root=dash_root) as view:
        assert view.status == "COMPLETED"
        assert view.metrics("train").column("loss").tolist() == [1.0 / (step + 1) for step in range(10)]
