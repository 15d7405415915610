"""A synced dataset of 1,000 runs read by real engines: Dask's distributed scheduler
(two worker processes) and DuckDB compute the per-run count, sum, min, max and
last of ``loss`` that ml_dash computes from the stores, equal to the last bit.

The losses are multiples of 1/64 below 64, so every sum of them is exact in
float64 whatever order an engine adds them in: a difference in a sum would
be a point lost, doubled or changed, never rounding.
"""

import glob
import os
import subprocess
import sys

import pytest

import ml_dash

pa = pytest.importorskip("pyarrow")
ds = pytest.importorskip("pyarrow.dataset")

RUNS = 1000


MAKE_RUNS = """
import sys, numpy as np, ml_dash
root, first, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for r in range(first, stop):
    rng = np.random.default_rng(r)
    with ml_dash.Experiment(prefix=f"sweep/lr/run-{r:04d}", dash_root=root).run as exp:
        train = exp.metrics("train")
        for step, k in enumerate(rng.integers(0, 64 * 64, size=int(rng.integers(1, 12)))):
            train.log(loss=k / 64, step=step)
        exp.metrics.log(epoch=1)  # a second stream, which the queries leave out
"""


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dash"))
    dest = str(tmp_path_factory.mktemp("dataset"))
    makers = [subprocess.Popen([sys.executable, "-c", MAKE_RUNS, root, str(first), str(first + RUNS // 2)])
              for first in (0, RUNS // 2)]  # two processes: the machine has two cores
    assert [maker.wait(timeout=300) for maker in makers] == [0, 0]
    summary = ml_dash.sync(dest, dash_root=root)
    assert summary.runs == RUNS and not summary.failed
    return root, dest


@pytest.fixture(scope="module")
def expected(synced):
    """``{prefix: (count, sum, min, max, last)}`` of ``loss``, from the stores."""
    root, _ = synced
    out = {}
    for run in ml_dash.list_experiments(root):
        with ml_dash.load(run["prefix"], dash_root=root) as view:
            loss = view.metrics("train").column("loss")
            out[run["prefix"]] = (len(loss), float(loss.sum()), float(loss.min()), float(loss.max()),
                                  float(loss[-1]))
    assert len(out) == RUNS
    return out


def test_duckdb_computes_the_same_per_run_aggregates(synced, expected):
    duckdb = pytest.importorskip("duckdb")
    _, dest = synced
    rows = duckdb.sql(f"""
        select run, count(loss), sum(loss), min(loss), max(loss), arg_max(loss, index)
        from read_parquet('{dest}/metrics/**/*.parquet', hive_partitioning = true,
                          hive_types_autocast = false, union_by_name = true)
        where stream = 'train'
        group by run
    """).fetchall()
    assert {run: tuple(values) for run, *values in rows} == expected


def _summary(frame):
    """count, sum, min, max of ``loss`` per run of one Dask partition, with the loss at
    the run's largest index there (``end``, ``last``)."""
    frame = frame.reset_index(drop=True)
    by_run = frame.groupby("run", observed=True)
    out = by_run["loss"].agg(["count", "sum", "min", "max"])
    ends = frame.loc[by_run["index"].idxmax()].set_index("run")
    out["end"], out["last"] = ends["index"], ends["loss"]
    return out.reset_index()


def test_dask_distributed_computes_the_same_per_run_aggregates(synced, expected):
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    pd = pytest.importorskip("pandas")
    _, dest = synced
    base = os.path.join(dest, "metrics")
    hive = ds.partitioning(pa.schema([("project", pa.string()), ("run", pa.string()),
                                      ("stream", pa.string())]), flavor="hive")
    files = sorted(glob.glob(os.path.join(base, "*", "*", "stream=train", "*.parquet")))
    assert len(files) == RUNS

    def read(paths):
        found = ds.dataset(paths, partitioning=hive, partition_base_dir=base, format="parquet")
        return found.to_table(columns=["run", "index", "loss"]).to_pandas()

    meta = pd.DataFrame({"run": pd.Series(dtype=object), "count": pd.Series(dtype="int64"),
                         **{key: pd.Series(dtype="float64") for key in ("sum", "min", "max")},
                         "end": pd.Series(dtype="int64"), "last": pd.Series(dtype="float64")})
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        # Eight partitions of 125 files each: one partition per file (read_parquet's
        # way) spends its time scheduling a thousand tiny tasks.
        points = dd.from_map(read, [files[i::8] for i in range(8)])
        per_part = points.map_partitions(_summary, meta=meta)
        totals = per_part.groupby("run").agg({"count": "sum", "sum": "sum", "min": "min",
                                               "max": "max"}, split_out=1)
        totals, ends = dask.compute(totals, per_part[["run", "end", "last"]])
    last = ends.sort_values("end").groupby("run")["last"].last()
    found = {run: (int(row["count"]), float(row["sum"]), float(row["min"]), float(row["max"]),
                   float(last[run])) for run, row in totals.iterrows()}
    assert found == expected
