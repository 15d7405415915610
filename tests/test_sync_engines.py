"""A synced dataset of 1,000 runs read by real engines: Dask's distributed scheduler
(two worker processes) and DuckDB compute the per-run count, sum, min, max and
last of ``loss`` that ml_dash computes from the stores, equal to the last bit.

The losses are multiples of 1/64 below 64, so every sum of them is exact in
float64 whatever order an engine adds them in: a difference in a sum would
be a point lost, doubled or changed, never rounding.
"""

import os

import numpy as np
import pytest

import ml_dash

pa = pytest.importorskip("pyarrow")
ds = pytest.importorskip("pyarrow.dataset")

RUNS = 1000


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dash"))
    dest = str(tmp_path_factory.mktemp("dataset"))
    rng = np.random.default_rng(16)
    for r in range(RUNS):
        with ml_dash.Experiment(prefix=f"sweep/lr/run-{r:04d}", dash_root=root).run as exp:
            train = exp.metrics("train")
            for step, k in enumerate(rng.integers(0, 64 * 64, size=int(rng.integers(1, 12)))):
                train.log(loss=k / 64, step=step)
            exp.metrics.log(epoch=1)  # a second stream, which the queries leave out
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


def test_dask_distributed_computes_the_same_per_run_aggregates(synced, expected):
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    _, dest = synced
    partitioning = ds.partitioning(pa.schema([("project", pa.string()), ("run", pa.string()),
                                              ("stream", pa.string())]), flavor="hive")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        points = dd.read_parquet(os.path.join(dest, "metrics"), columns=["run", "index", "loss"],
                                 filters=[("stream", "==", "train")],
                                 dataset={"partitioning": partitioning})
        by_run = points.groupby("run")
        stats = by_run["loss"].agg(["count", "sum", "min", "max"])
        ends = by_run["index"].max().rename("index").reset_index()
        last = points.merge(ends, on=["run", "index"])[["run", "loss"]].set_index("run")["loss"]
        stats, last = dask.compute(stats, last)  # on the cluster: the client is the default
    found = {run: (int(row["count"]), float(row["sum"]), float(row["min"]), float(row["max"]),
                   float(last[run])) for run, row in stats.iterrows()}
    assert found == expected
