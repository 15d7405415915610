"""ml_dash.sync and ml-dash sync: runs appended to a hive-partitioned Parquet dataset.

Every test compares the dataset with the stores it came from, point for point.
"""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ml_dash
from ml_dash import DatasetError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
ds = pytest.importorskip("pyarrow.dataset")

HIVE = ds.partitioning(pa.schema([("project", pa.string()), ("run", pa.string()),
                                  ("stream", pa.string())]), flavor="hive")


def log_run(dash_root, prefix, streams, params=None):
    """A run with ``{stream name: number of points}``, values made from the index."""
    with ml_dash.Experiment(prefix=prefix, dash_root=dash_root).run as exp:
        if params:
            exp.params.set(**params)
        for name, count in streams.items():
            stream = exp.metrics(name)
            for i in range(count):
                stream.log(loss=(i % 97) / 8, step=i)
            stream.flush()


def dataset_points(dest):
    """``{(run, stream): {column: array}}`` of every point the dataset holds, read the
    way pyarrow reads a hive dataset, in index order (none before a first point is synced)."""
    if not os.path.isdir(os.path.join(dest, "metrics")):
        return {}
    found = ds.dataset(os.path.join(dest, "metrics"), partitioning=HIVE, format="parquet")
    # Streams have different columns: the dataset's schema is the union of its files'.
    schema = pa.unify_schemas([part.physical_schema for part in found.get_fragments()] + [HIVE.schema])
    table = ds.dataset(os.path.join(dest, "metrics"), schema=schema, partitioning=HIVE,
                       format="parquet").to_table()
    out = {}
    for run, stream in set(zip(table["run"].to_pylist(), table["stream"].to_pylist())):
        mask = pa.compute.and_(pa.compute.equal(table["run"], run),
                               pa.compute.equal(table["stream"], stream) if stream is not None
                               else pa.compute.is_null(table["stream"]))
        rows = table.filter(mask).sort_by("index")
        out[run, stream] = {name: rows[name].to_numpy(zero_copy_only=False)
                            for name in rows.column_names
                            if name not in ("project", "run", "stream") and rows[name].null_count == 0}
    return out


def store_points(dash_root):
    """The same mapping read from the stores."""
    out = {}
    for run in ml_dash.list_experiments(dash_root):
        with ml_dash.load(run["prefix"], dash_root=dash_root) as view:
            for name in view.metrics.names():
                stream = view.metrics(name)
                columns = {key: np.array(value) for key, value in stream.columns().items()}
                out[run["prefix"], name] = {"index": np.arange(len(stream)), **columns}
    return out


def assert_same(dest, dash_root):
    held, stored = dataset_points(dest), store_points(dash_root)
    assert sorted(held, key=str) == sorted(stored, key=str)
    for key, columns in stored.items():
        assert set(held[key]) == set(columns), key
        for name, values in columns.items():
            np.testing.assert_array_equal(held[key][name], values, err_msg=str((key, name)))
    assert not [name for folder, _, names in os.walk(dest) for name in names if name.endswith(".tmp")]


def test_odd_prefixes_and_stream_names_round_trip(tmp_path):
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    log_run(root, "al ice/pr%j=x/run,1/ü", {None: 5, "x/y": 3, "0": 4})
    log_run(root, "bob/p", {"train": 7}, params={"lr": 0.5, "opt": {"name": "adam"}, "bad": float("nan")})
    summary = ml_dash.sync(dest, dash_root=root)
    assert (summary.runs, summary.points, summary.skipped, summary.failed) == (2, 19, 0, {})
    assert_same(dest, root)
    runs = ds.dataset(os.path.join(dest, "runs"), partitioning=HIVE, format="parquet").to_table()
    by_run = {row["run"]: row for row in runs.to_pylist()}
    assert sorted(by_run) == ["al ice/pr%j=x/run,1/ü", "bob/p"]
    bob = by_run["bob/p"]
    assert (bob["project"], bob["status"], bob["points"]) == ("bob/p", "COMPLETED", 7)
    assert json.loads(bob["params"]) == {"lr": 0.5, "opt.name": "adam", "bad": None}
    assert by_run["al ice/pr%j=x/run,1/ü"]["project"] == "al ice/pr%j=x"


def test_a_stream_named_as_the_hive_null_is_left_out_and_named(tmp_path):
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    log_run(root, "a/p/r", {None: 2, "__HIVE_DEFAULT_PARTITION__": 3, "train": 4})
    summary = ml_dash.sync(dest, dash_root=root)
    assert summary.points == 6
    assert "the stream '__HIVE_DEFAULT_PARTITION__' is not synced" in summary.failed["a/p/r"]
    held = dataset_points(dest)
    assert sorted(held, key=str) == [("a/p/r", "train"), ("a/p/r", None)]
    assert len(held["a/p/r", None]["index"]) == 2


def test_a_stream_with_a_key_named_as_a_dataset_column_is_left_out_and_named(tmp_path):
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    with ml_dash.Experiment(prefix="a/p/r", dash_root=root).run as exp:
        exp.metrics("odd").log(index=5, loss=1.0)
        exp.metrics("train").log(loss=2.0)
    summary = ml_dash.sync(dest, dash_root=root)
    assert summary.points == 1
    assert ("the stream 'odd' is not synced: its key 'index' is a column name of the dataset"
            in summary.failed["a/p/r"])
    assert sorted(dataset_points(dest), key=str) == [("a/p/r", "train")]
    run = pq.read_table(os.path.join(dest, "runs", "project=a%2Fp", "run=a%2Fp%2Fr", "run.parquet"))
    assert run["points"].to_pylist() == [1]  # what the dataset holds, not what the run does


def test_later_syncs_append_only_new_points(tmp_path):
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    log_run(root, "a/p/r", {"train": 10})
    assert ml_dash.sync(dest, dash_root=root).points == 10
    again = ml_dash.sync(dest, dash_root=root)
    assert (again.runs, again.points, again.files, again.skipped) == (0, 0, 0, 1)
    with ml_dash.Experiment(prefix="a/p/r", dash_root=root).run as exp:  # resumed
        for i in range(10, 25):
            exp.metrics("train").log(loss=i / 4, step=i)
    later = ml_dash.sync(dest, dash_root=root)
    assert (later.runs, later.points) == (1, 15)
    folder = os.path.join(dest, "metrics", "project=a%2Fp", "run=a%2Fp%2Fr", "stream=train")
    assert sorted(os.listdir(folder)) == ["part-000000000000-000000000009.parquet",
                                          "part-000000000010-000000000024.parquet"]
    assert_same(dest, root)


def test_a_run_whose_facts_changed_since_the_last_sync_gets_a_new_run_file(tmp_path):
    """A sync with nothing new skips an ended run from its saved summary; a tag, a
    description or params set after the run ended are still seen by the next sync."""
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    log_run(root, "a/p/r", {"train": 5}, params={"lr": 0.1})
    ml_dash.sync(dest, dash_root=root)
    ml_dash.annotate("a/p/r", dash_root=root, tags=["best"], description="the one")
    again = ml_dash.sync(dest, dash_root=root)
    assert (again.runs, again.points, again.files) == (1, 0, 1)  # the run file only
    run = pq.read_table(os.path.join(dest, "runs", "project=a%2Fp", "run=a%2Fp%2Fr", "run.parquet"))
    assert run.column("tags").to_pylist() == [["best"]]
    assert run.column("description").to_pylist() == ["the one"]
    assert ml_dash.sync(dest, dash_root=root).skipped == 1
    assert_same(dest, root)


def test_compact_merges_small_parts_and_a_killed_merge_is_cleared(tmp_path):
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    for start in range(0, 40, 10):
        with ml_dash.Experiment(prefix="a/p/r", dash_root=root).run as exp:
            for i in range(start, start + 10):
                exp.metrics("train").log(loss=i / 2, step=i)
        ml_dash.sync(dest, dash_root=root)
    folder = os.path.join(dest, "metrics", "project=a%2Fp", "run=a%2Fp%2Fr", "stream=train")
    small = sorted(os.listdir(folder))
    assert len(small) == 4
    kept = {name: open(os.path.join(folder, name), "rb").read() for name in small}
    assert ml_dash.sync(dest, dash_root=root, compact=True).files == 1
    assert os.listdir(folder) == ["part-000000000000-000000000039.parquet"]
    assert_same(dest, root)
    # A merge killed after its part was in place and before the small parts were removed.
    for name, data in kept.items():
        open(os.path.join(folder, name), "wb").write(data)
    assert ml_dash.sync(dest, dash_root=root).points == 0
    assert os.listdir(folder) == ["part-000000000000-000000000039.parquet"]
    assert_same(dest, root)


def test_a_dataset_that_disagrees_with_its_run_is_named_and_the_others_sync(tmp_path):
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    log_run(root, "a/p/long", {"train": 30})
    log_run(root, "a/p/gap", {"train": 5})
    ml_dash.sync(dest, dash_root=root)
    for start in (5, 10):
        with ml_dash.Experiment(prefix="a/p/gap", dash_root=root).run as exp:
            for i in range(start, start + 5):
                exp.metrics("train").log(loss=1.0, step=i)
        ml_dash.sync(dest, dash_root=root)
    ml_dash.load("a/p/long", dash_root=root).close()
    import shutil
    shutil.rmtree(os.path.join(root, "a", "p", "long"))
    log_run(root, "a/p/long", {"train": 3})  # the same prefix, a new and shorter run
    gap = os.path.join(dest, "metrics", "project=a%2Fp", "run=a%2Fp%2Fgap", "stream=train")
    os.remove(os.path.join(gap, "part-000000000005-000000000009.parquet"))
    log_run(root, "a/p/new", {"train": 4})
    summary = ml_dash.sync(dest, dash_root=root)
    assert summary.points == 4 and sorted(summary.failed) == ["a/p/gap", "a/p/long"]
    assert isinstance(DatasetError("x"), ValueError)
    assert "holds 30 points of stream 'train' of 'a/p/long', the run only 3" in summary.failed["a/p/long"]
    assert "starts at point 10, the parts before it end at 5" in summary.failed["a/p/gap"]
    done = subprocess.run([sys.executable, "-m", "ml_dash", "sync", dest, "a/p/*", "--dash-root", root],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout.startswith("0 runs synced to ")
    assert "ml-dash sync: a/p/long: " in done.stderr and "ml-dash sync: a/p/gap: " in done.stderr


def test_a_run_another_sync_holds_is_left_to_it(tmp_path):
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    log_run(root, "a/p/r", {"train": 3})
    log_run(root, "a/p/s", {"train": 3})
    ml_dash.sync(dest, "a/p/s", dash_root=root)
    lock = os.path.join(dest, "runs", "project=a%2Fp", "run=a%2Fp%2Fs", ".sync.lock")
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        summary = ml_dash.sync(dest, dash_root=root)
    assert summary.runs == 1 and list(summary.failed) == ["a/p/s"]
    assert "another sync is writing 'a/p/s'" in summary.failed["a/p/s"]


def test_a_prefix_too_long_for_a_folder_name_is_named_and_the_others_sync(tmp_path):
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    long = "a/p/" + "/".join(["x" * 100] * 3)
    log_run(root, long, {"train": 2})
    log_run(root, "a/p/short", {"train": 2})
    summary = ml_dash.sync(dest, dash_root=root)
    assert summary.runs == 1 and list(summary.failed) == [long]
    assert "is too long to be a folder name of the dataset" in summary.failed[long]


def test_bad_arguments_are_refused_at_the_call(tmp_path):
    root = str(tmp_path / "dash")
    log_run(root, "a/p/run", {"train": 1})
    with pytest.raises(TypeError, match="dest must be a folder path, got int"):
        ml_dash.sync(3, dash_root=root)
    with pytest.raises(FileNotFoundError, match="a/p/run"):
        ml_dash.sync(str(tmp_path / "d"), "a/p/rnu", dash_root=root)


def test_cli_prints_the_summary(tmp_path):
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    log_run(root, "a/p/r", {"train": 3, None: 2})
    command = [sys.executable, "-m", "ml_dash", "sync", dest, "--dash-root", root]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == f"1 runs synced to {dest}: 5 points, 3 files; 0 up to date\n"
    done = subprocess.run(command + ["--json"], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == {"runs": 0, "points": 0, "files": 0, "skipped": 1, "failed": {}}


KILLED_SYNC = """
import sys, ml_dash
ml_dash.sync(sys.argv[1], dash_root=sys.argv[2])
"""


def test_a_killed_sync_is_completed_by_the_next(tmp_path):
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    for r in range(40):
        log_run(root, f"a/p/run-{r:02d}", {"train": 200, None: 20})
    metrics = os.path.join(dest, "metrics")
    for kill_after in (5, 30):
        child = subprocess.Popen([sys.executable, "-c", KILLED_SYNC, dest, root])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.poll() is None:
            done = sum(len(names) for _, _, names in os.walk(metrics)) if os.path.isdir(metrics) else 0
            if done >= kill_after:
                break
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.wait()
    parts = sum(len(names) for _, _, names in os.walk(metrics))
    assert 30 <= parts < 80  # killed mid-way: 40 runs of two streams make 80 parts
    summary = ml_dash.sync(dest, dash_root=root)
    assert not summary.failed and summary.runs + summary.skipped == 40
    assert_same(dest, root)


LIVE_WRITER = """
import sys, time, ml_dash
with ml_dash.Experiment(prefix="a/p/live", dash_root=sys.argv[1]).run as exp:
    for i in range(int(sys.argv[2])):
        exp.metrics("train").log(loss=i / 8, step=i).flush()
        exp.metrics.log(epoch=i // 10)
        time.sleep(0.0005)
"""


def test_sync_while_the_run_trains_holds_a_committed_prefix(tmp_path):
    root, dest = str(tmp_path / "dash"), str(tmp_path / "dataset")
    writer = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, root, "1500"])
    try:
        synced = 0
        while writer.poll() is None or synced < 2:
            if os.path.isdir(os.path.join(root, "a", "p", "live")):
                ml_dash.sync(dest, dash_root=root)
                held = dataset_points(dest).get(("a/p/live", "train"))
                if held is not None:
                    count = len(held["index"])
                    np.testing.assert_array_equal(held["index"], np.arange(count))
                    np.testing.assert_array_equal(held["loss"], np.arange(count) / 8)
                    synced += 1
            time.sleep(0.05)
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    ml_dash.sync(dest, dash_root=root)
    assert len(dataset_points(dest)["a/p/live", "train"]["index"]) == 1500
    assert_same(dest, root)
    runs = pq.read_table(os.path.join(dest, "runs", "project=a%2Fp", "run=a%2Fp%2Flive", "run.parquet"))
    assert runs["status"].to_pylist() == ["COMPLETED"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)))
def test_partition_values_encode_reversibly_to_one_safe_folder_name(value):
    from ml_dash.analysis.dataset import HIVE_NULL, decode_value, encode_value
    if value == HIVE_NULL:
        return
    encoded = encode_value(value)
    assert decode_value(encoded) == value
    assert re.fullmatch(r"[A-Za-z0-9_.~%-]*", encoded)  # no "/", "=" or space: one folder name
