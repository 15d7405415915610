"""Reading for analysis: finding runs, ranges, joins, downsampling, tables, export, plots."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ml_dash
from ml_dash import Experiment, load


def make_run(dash_root, prefix, steps=300, eval_every=50, note=True):
    """A completed run: train every step, eval every ``eval_every`` steps, root step."""
    with Experiment(prefix=prefix, dash_root=dash_root).run as exp:
        for step in range(steps):
            exp.metrics("train").log(loss=1.0 / (step + 1), step=step, epoch=step // eval_every)
            if step % eval_every == eval_every - 1:
                fields = dict(loss=2.0 / (step + 1), epoch=step // eval_every)
                if note:
                    fields["note"] = f"eval {step}"
                exp.metrics("eval").log(**fields)
            exp.metrics.log(step=step).flush()


# -- list_experiments ----------------------------------------------------------------


def test_list_experiments_reports_status_times_and_stream_counts(dash_root):
    make_run(dash_root, "alice/proj/lr-0.1", steps=120)
    [run] = ml_dash.list_experiments(dash_root)
    assert run["prefix"] == "alice/proj/lr-0.1"
    assert run["status"] == "COMPLETED" and run["stale"] is False
    assert run["startedAt"].endswith("Z") and run["endedAt"] >= run["startedAt"]
    assert run["streams"] == [{"name": None, "count": 120}, {"name": "eval", "count": 2},
                              {"name": "train", "count": 120}]
    assert run["points"] == 242


@pytest.mark.parametrize("pattern, expected", [
    (None, ["alice/a/lr-1", "alice/b/lr-2", "alice/b/x/lr-3", "bob/a/run"]),
    ("alice/*/*", ["alice/a/lr-1", "alice/b/lr-2"]),
    ("alice/**", ["alice/a/lr-1", "alice/b/lr-2", "alice/b/x/lr-3"]),
    ("**/lr-*", ["alice/a/lr-1", "alice/b/lr-2", "alice/b/x/lr-3"]),
    ("*/a/*", ["alice/a/lr-1", "bob/a/run"]),
    ("alice/b/lr-?", ["alice/b/lr-2"]),
    ("alice/[ab]/lr-[12]", ["alice/a/lr-1", "alice/b/lr-2"]),
    ("bob/a/run", ["bob/a/run"]),
    ("alice", []),
    ("nobody/**", []),
])
def test_list_experiments_globs_over_prefixes(dash_root, pattern, expected):
    for prefix in ("alice/a/lr-1", "alice/b/lr-2", "alice/b/x/lr-3", "bob/a/run"):
        with Experiment(prefix=prefix, dash_root=dash_root).run as exp:
            exp.metrics.log(x=1).flush()
    assert [r["prefix"] for r in ml_dash.list_experiments(dash_root, pattern)] == expected


def test_list_experiments_of_a_missing_root_is_empty(tmp_path):
    assert ml_dash.list_experiments(str(tmp_path / "nothing")) == []


def test_a_killed_writer_is_reported_stale_and_a_live_one_is_not(dash_root):
    script = textwrap.dedent(f"""
        import sys, time
        from ml_dash import Experiment
        exp = Experiment(prefix="alice/proj/live", dash_root={dash_root!r})
        exp.run.start()
        exp.metrics("train").log(loss=1.0).flush()
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(5):
            exp.metrics("train").log(loss=float(i)).flush()
        exp.run.complete()
        print("done", flush=True)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        [run] = ml_dash.list_experiments(dash_root)
        assert (run["status"], run["stale"]) == ("RUNNING", False)
        assert run["streams"] == [{"name": "train", "count": 1}]
        # Listing took nothing from the writer: it goes on and completes.
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "done"
    finally:
        writer.wait(timeout=30)
    [run] = ml_dash.list_experiments(dash_root)
    assert (run["status"], run["stale"], run["points"]) == ("COMPLETED", False, 6)

    killed = subprocess.Popen([sys.executable, "-c", script.replace("live", "killed")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "ready"
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    runs = {r["prefix"]: r for r in ml_dash.list_experiments(dash_root)}
    assert (runs["alice/proj/killed"]["status"], runs["alice/proj/killed"]["stale"]) == ("RUNNING", True)


def test_list_experiments_sees_a_run_open_in_this_process_as_live(dash_root):
    exp = Experiment(prefix="alice/proj/open", dash_root=dash_root)
    exp.run.start()
    try:
        exp.metrics.log(x=1).flush()
        [run] = ml_dash.list_experiments(dash_root)
        assert (run["status"], run["stale"]) == ("RUNNING", False)
    finally:
        exp.run.complete()


# -- ranges --------------------------------------------------------------------------


def test_index_range_and_between_find_points_by_binary_search(dash_root):
    make_run(dash_root, "alice/proj/exp", steps=300)
    with load("alice/proj/exp", dash_root=dash_root) as view:
        train = view.metrics("train")
        assert train.index_range(100, 150, key="step") == (100, 150)
        assert train.index_range(None, 10, key="step") == (0, 10)
        assert train.index_range(290, None, key="step") == (290, 300)
        assert train.index_range(1000, 2000, key="step") == (300, 300)
        ts = train.column("_ts")
        start, stop = train.index_range(ts[20], ts[40])
        assert (start, stop) == (20, 40)
        part = train.between(10.5, 13, key="step", keys=["loss"])
        assert set(part) == {"index", "step", "loss"}
        assert part["index"].tolist() == [11, 12]
        assert part["loss"].tolist() == [1 / 12, 1 / 13]
        assert set(train.between(0, 1, key="step")) == {"index", "_ts", "loss", "step", "epoch"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-50, 50), max_size=40).map(sorted),
       st.integers(-60, 60), st.integers(-60, 60))
def test_index_range_equals_a_scan(values, low, high):
    from ml_dash.arrays import index_range
    array = np.array(values, dtype=np.float64)
    start, stop = index_range(array, low, high)
    assert list(range(start, stop)) == [i for i, v in enumerate(values) if low <= v < high]


def test_align_joins_streams_on_a_key_and_on_the_snapshot(dash_root):
    make_run(dash_root, "alice/proj/exp", steps=200, eval_every=50)
    with load("alice/proj/exp", dash_root=dash_root) as view:
        train, evaluate = view.metrics("train"), view.metrics("eval")
        joined = ml_dash.align(train, evaluate, on="epoch", keys=["loss"])
        assert joined["epoch"].tolist() == [0, 1, 2, 3]
        assert joined["train.index"].tolist() == [49, 99, 149, 199]  # last train point per epoch
        assert joined["eval.index"].tolist() == [0, 1, 2, 3]
        assert joined["train.loss"].tolist() == [1 / 50, 1 / 100, 1 / 150, 1 / 200]
        assert joined["eval.loss"].tolist() == [2 / 50, 2 / 100, 2 / 150, 2 / 200]

        # eval is logged in the same flush as train steps 49, 99, ...
        joined = ml_dash.align(train, evaluate, view.metrics, on="snapshot")
        assert joined["train.step"].tolist() == [49, 99, 149, 199]
        assert joined["root.step"].tolist() == [49, 99, 149, 199]
        assert joined["eval.index"].tolist() == [0, 1, 2, 3]
        assert len(train.commit_times()) == 200
        with pytest.raises(ValueError):
            ml_dash.align(train, on="epoch")


# -- downsampling --------------------------------------------------------------------


def reference_minmax(values, n):
    buckets = n // 2
    width = -(-len(values) // buckets)
    picked = set()
    for start in range(0, len(values), width):
        chunk = values[start:start + width]
        if np.isnan(chunk).all():
            continue
        picked.update((start + int(np.nanargmin(chunk)), start + int(np.nanargmax(chunk))))
    return sorted(picked)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))), min_size=0, max_size=300),
       st.integers(2, 40))
def test_minmax_keeps_each_buckets_smallest_and_largest_point(values, n):
    from ml_dash.downsample import downsample
    array = np.array(values, dtype=np.float64)
    picked, ys = downsample(array, n, "minmax")
    assert np.array_equal(ys, array[picked], equal_nan=True)
    if len(values) <= n:
        assert picked.tolist() == list(range(len(values)))
    else:
        assert picked.tolist() == reference_minmax(array, n)
        assert len(picked) <= n


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 3).map(float), st.just(float("nan"))),
                min_size=1, max_size=400),
       st.integers(2, 12), st.sampled_from([2, 4, 16]), st.sampled_from([8, 64, 1 << 20]))
def test_minmax_in_runs_and_chunks_equals_the_reference(values, n, sub, chunk):
    # Small runs and chunks take, on short columns, the paths long columns take.
    from ml_dash import downsample as module
    array = np.array(values)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "SUB", sub)
        patch.setattr(module, "CHUNK", chunk)
        picked, ys = module.downsample(array, n, "minmax")
    if len(values) > n:
        assert picked.tolist() == reference_minmax(array, n)
    assert np.array_equal(ys, array[picked], equal_nan=True)


def test_minmax_walks_long_buckets_in_chunks(monkeypatch):
    from ml_dash import downsample as module
    monkeypatch.setattr(module, "CHUNK", 64)  # buckets of 500 points span several chunks
    values = np.sin(np.arange(2000) / 37.0) * np.arange(2000)
    values[100:700] = np.nan
    picked, ys = module.downsample(values, 8, "minmax")
    assert picked.tolist() == reference_minmax(values, 8) and np.array_equal(ys, values[picked])
    assert np.array_equal(module.take(values, picked[::-1]), values[picked[::-1]])


def reference_lttb(x, y, n):
    """LTTB written from the paper's description, one bucket at a time."""
    size = len(y)
    edges = np.linspace(1, size - 1, n - 1).astype(int)
    out, a = [0], 0
    for i in range(n - 2):
        lo, hi = edges[i], edges[i + 1]
        if i < n - 3:
            cx, cy = x[edges[i + 1]:edges[i + 2]].mean(), y[edges[i + 1]:edges[i + 2]].mean()
        else:
            cx, cy = x[-1], y[-1]
        areas = [abs((x[a] - cx) * (y[b] - y[a]) - (x[a] - x[b]) * (cy - y[a])) for b in range(lo, hi)]
        a = lo + int(np.argmax(areas))
        out.append(a)
    return out + [size - 1]


@pytest.mark.parametrize("size, n", [(5000, 100), (1000, 200)])  # large and small buckets
def test_lttb_matches_the_algorithm_and_keeps_the_extremes(size, n):
    from ml_dash.downsample import downsample
    rng = np.random.default_rng(1)
    y = np.cumsum(rng.normal(size=size))
    picked, ys = downsample(y, n, "lttb")
    assert np.array_equal(ys, y[picked])
    reference = reference_lttb(np.arange(float(size)), y, n)
    assert picked[0] == 0 and picked[-1] == size - 1
    assert int(y.argmin()) in picked and int(y.argmax()) in picked
    # Identical except where an extreme replaced the point LTTB chose in its bucket.
    differ = [i for i, (a, b) in enumerate(zip(picked, reference)) if a != b]
    assert len(picked) == n and len(differ) <= 2
    assert all(picked[i] in (y.argmin(), y.argmax()) for i in differ)


def test_lttb_beyond_the_exact_limit_preselects_with_minmax(monkeypatch):
    from ml_dash import downsample as module
    monkeypatch.setattr(module, "EXACT_LTTB", 1000)
    rng = np.random.default_rng(2)
    y = np.cumsum(rng.normal(size=20_000))
    y[500:600] = np.nan
    picked, ys = module.downsample(y, 50, "lttb")
    assert np.array_equal(ys, y[picked])
    assert 50 <= len(picked) <= 51 and np.all(np.diff(picked) > 0)
    assert {0, int(np.nanargmin(y)), int(np.nanargmax(y)), 19_999} <= set(picked.tolist())
    assert not np.isnan(y[picked]).any()


def test_stream_downsample_on_views_and_live_runs(dash_root):
    exp = Experiment(prefix="alice/proj/exp", dash_root=dash_root)
    exp.run.start()
    try:
        for step in range(5000):
            exp.metrics("train").log(loss=np.sin(step / 100) + step / 5000, step=step * 10)
        exp.flush()
        live = exp.metrics("train")
        x, y = live.downsample("loss", 200)
        assert len(x) == len(y) <= 200
        losses = live.column("loss")
        assert y.max() == losses.max() and y.min() == losses.min()
        assert np.array_equal(y, losses[x])
        with load("alice/proj/exp", dash_root=dash_root) as view:
            train = view.metrics("train")
            xs, ys = train.downsample("loss", 100, "lttb", x="step")
            assert len(xs) == 100 and xs[0] == 0 and xs[-1] == 49_990
            assert np.array_equal(train.column("loss", downsample=100, method="lttb"), ys)
            xs, ys = train.downsample("loss", 50, start=1000, stop=2000)
            assert xs.min() >= 1000 and xs.max() < 2000
            with pytest.raises(ValueError, match="unknown downsampling method 'avg'"):
                train.downsample("loss", 10, "avg")
            with pytest.raises(ValueError, match="n >= 2"):
                train.downsample("loss", 1)
            with pytest.raises(KeyError, match="did you mean 'loss'"):
                train.downsample("los", 10)
            with pytest.raises(KeyError, match="did you mean stream 'train'"):
                view.metrics("trian").downsample("loss", 10)
    finally:
        exp.run.complete()


# -- tables, export and plots ------------------------------------------------------


def test_to_pandas_and_to_arrow_of_a_stream(dash_root):
    make_run(dash_root, "alice/proj/exp", steps=100)
    with load("alice/proj/exp", dash_root=dash_root) as view:
        train = view.metrics("train")
        df = train.to_pandas()
        assert list(df.columns) == ["_ts", "loss", "step", "epoch"] and len(df) == 100
        assert df.index.name == "index" and df.loc[9, "loss"] == 0.1
        assert list(train.to_pandas("loss", start=10, stop=20).index) == list(range(10, 20))
        table = train.to_arrow("loss", "step")
        assert table.column_names == ["index", "loss", "step"]
        assert table.column("step").to_pylist() == list(range(100))


def test_runs_table_is_one_long_table_of_many_runs(dash_root):
    make_run(dash_root, "alice/proj/lr-1", steps=60)
    make_run(dash_root, "alice/proj/lr-2", steps=40)
    make_run(dash_root, "bob/proj/other", steps=10)
    df = ml_dash.runs_table("alice/**", dash_root=dash_root, streams=["train", "eval"],
                            keys=["loss"])
    assert list(df.columns) == ["run", "stream", "index", "_ts", "loss"]
    sizes = df.groupby(["run", "stream"], observed=True).size().to_dict()
    assert sizes == {("alice/proj/lr-1", "eval"): 1, ("alice/proj/lr-1", "train"): 60,
                     ("alice/proj/lr-2", "train"): 40}
    row = df[(df.run == "alice/proj/lr-2") & (df.stream == "train") & (df["index"] == 3)]
    assert row["loss"].tolist() == [0.25]
    table = ml_dash.runs_table(dash_root=dash_root, to="arrow")
    assert table.num_rows == 2 * 60 + 1 + 2 * 40 + 2 * 10
    arrays = ml_dash.runs_table("bob/**", dash_root=dash_root, to="numpy")
    assert set(arrays["stream"]) == {"", "train"} and np.isnan(arrays["loss"][:10]).all()


def test_export_csv_jsonl_and_parquet(dash_root, tmp_path):
    make_run(dash_root, "alice/proj/exp", steps=120, eval_every=60)
    calls = []
    out = str(tmp_path / "run.csv")
    assert ml_dash.export("alice/proj/exp", out, dash_root=dash_root,
                          progress=lambda done, total: calls.append((done, total))) == 242
    assert calls[-1] == (242, 242)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["stream", "index", "createdAt", "_ts", "step", "loss", "epoch"]
    assert [r["stream"] for r in rows].count("train") == 120
    first_eval = next(r for r in rows if r["stream"] == "eval")
    assert (first_eval["loss"], first_eval["epoch"], first_eval["step"]) == (repr(2 / 60), "0", "")

    out = str(tmp_path / "run.jsonl")
    ml_dash.export("alice/proj/exp", out, dash_root=dash_root, streams=["eval"])
    with open(out) as f:
        lines = [json.loads(line) for line in f]
    assert [line["data"]["note"] for line in lines] == ["eval 59", "eval 119"]
    assert lines[0]["stream"] == "eval" and lines[0]["createdAt"].endswith("Z")

    import pyarrow.parquet as pq
    out = str(tmp_path / "run.parquet")
    ml_dash.export("alice/proj/exp", out, dash_root=dash_root)
    table = pq.read_table(out)
    assert table.num_rows == 242
    assert table.column("loss").to_pylist()[122:125] == [1.0, 1 / 2, 1 / 3]  # after root and eval

    with pytest.raises(ValueError, match="unknown export format 'xls'"):
        ml_dash.export("alice/proj/exp", str(tmp_path / "run.xls"), dash_root=dash_root)
    assert sorted(os.listdir(tmp_path)) == ["dash", "run.csv", "run.jsonl", "run.parquet"]


def test_plot_writes_an_image_of_several_runs(dash_root, tmp_path):
    make_run(dash_root, "alice/proj/lr-1", steps=50)
    make_run(dash_root, "alice/proj/lr-2", steps=50)
    with Experiment(prefix="alice/proj/other", dash_root=dash_root).run as exp:
        exp.metrics("train").log(accuracy=0.5).flush()   # no loss: left out of the plot
    out = str(tmp_path / "loss.png")
    drawn = ml_dash.plot("alice/proj/lr-1", "train", "loss", out, compare="alice/proj/*",
                         dash_root=dash_root, points=20)
    assert drawn == ["alice/proj/lr-1", "alice/proj/lr-2"]
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_analysis_benchmark_runs_in_quick_mode():
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "bench", "analysis.py")
    done = subprocess.run([sys.executable, bench, "--quick"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| `minmax` |" in done.stdout and "over 30 runs" in done.stdout
