"""Benchmark of the rest of the experiment API against floors measured in the same run.

    python bench/api.py            # full: 100,000 buffer() calls, 10,000 values per key, 100 MB file
    python bench/api.py --quick    # smoke run

- ``buffer(loss, accuracy)`` per call against a function that appends its
  keyword dict to a list (the floor of any Python call that keeps its values);
- ``buffer.log_summary()`` over 10,000 buffered values per key against the
  same statistics computed with the ``statistics`` module;
- ``params.set()`` of many keys (flat, and nested pairs) into a fresh run,
  and of one key into a run holding them, against writing the same flat
  dict as one JSON file with an fsync (what the reference package does; a
  set commits as a flush does: it survives a killed process at once, and
  is fsynced within ``sync_interval``);
- saving a file (``files.upload``: copy, sha256, fsync, rename, LMDB record)
  and downloading it (copy with sha256 check) against ``shutil.copyfile``,
  with and without an fsync, of the same file, and against hashing it alone
  (no verified copy can beat that).

Figures are medians of interleaved rounds; the machine is shared and noisy,
so read the ratios.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core import fresh, interleaved, report  # noqa: E402

import ml_dash  # noqa: E402

ALL = ("mean", "std", "min", "max", "count", "median", "sum",
       "p50", "p90", "p95", "p99", "first", "last")


def floor_list_append(calls):
    staged = []

    def buffer(**fields):
        staged.append(fields)

    start = time.perf_counter()
    for i in range(calls):
        buffer(loss=1.0 / (i + 1), accuracy=0.5)
    return (time.perf_counter() - start) / calls * 1e6


def ml_dash_buffer(directory, calls):
    with ml_dash.Experiment(prefix="bench/api/buffer", dash_root=directory).run as exp:
        train = exp.metrics("train")
        start = time.perf_counter()
        for i in range(calls):
            train.buffer(loss=1.0 / (i + 1), accuracy=0.5)
        elapsed = time.perf_counter() - start
        exp.metrics.buffer.log_summary()
    return elapsed / calls * 1e6


def statistics_floor(columns, aggs, mean=statistics.fmean):
    """The statistics of ``columns`` ({key: list}) with the ``statistics`` module."""
    start = time.perf_counter()
    out = {}
    for key, values in columns.items():
        q = statistics.quantiles(values, n=100, method="inclusive") if len(aggs) > 1 else None
        stats = {"mean": mean(values)}
        if len(aggs) > 1:
            stats.update(std=statistics.stdev(values), min=min(values), max=max(values),
                         count=len(values), median=statistics.median(values),
                         sum=math.fsum(values), p50=q[49], p90=q[89], p95=q[94], p99=q[98],
                         first=values[0], last=values[-1])
        out.update({f"{key}.{agg}": stats[agg] for agg in aggs})
    elapsed = time.perf_counter() - start
    return elapsed * 1e3, out


def summary_figures(directory, values_per_key, repeats):
    rng = np.random.default_rng(0)
    columns = {"loss": rng.random(values_per_key).tolist(),
               "accuracy": rng.random(values_per_key).tolist()}
    figures = {}
    with ml_dash.Experiment(prefix="bench/api/summary", dash_root=directory).run as exp:
        train = exp.metrics("train")
        train.buffer(loss=1.0)
        exp.metrics.buffer.log_summary(*ALL)  # warm-up: numpy's first percentile is slow
        for aggs in (("mean",), ALL):
            label = "all 13" if len(aggs) > 1 else "mean"

            def ours():
                for loss, accuracy in zip(columns["loss"], columns["accuracy"]):
                    train.buffer(loss=loss, accuracy=accuracy)
                start = time.perf_counter()
                exp.metrics.buffer.log_summary(*aggs)
                elapsed = (time.perf_counter() - start) * 1e3
                exp.flush()
                return elapsed

            floors = [(f"statistics module, {label}", lambda: statistics_floor(columns, aggs)[0])]
            if label == "mean":  # the floor above uses fmean (float sum); mean is exact
                floors.append(("statistics.mean, mean",
                               lambda: statistics_floor(columns, aggs, statistics.mean)[0]))
            got = interleaved(repeats, floors + [(f"ml_dash log_summary, {label}", ours)])
            # Same numbers as the statistics module (to rounding).
            point = train.read(start_index=len(train) - 1, limit=1)["data"][0]["data"]
            expected = statistics_floor(columns, aggs)[1]
            assert all(math.isclose(point[k], v, rel_tol=1e-9) for k, v in expected.items())
            figures.update(got)
    return figures


def json_floor(path, flat):
    """The flat params as one JSON file, fsynced: milliseconds."""
    start = time.perf_counter()
    with open(path, "w") as handle:
        json.dump(flat, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return (time.perf_counter() - start) * 1e3


def params_figures(root, keys, repeats):
    flat = {f"p{i}": i * 0.001 for i in range(keys)}
    nested = {"model": {f"layer{i}": {"w": i, "b": -i} for i in range(keys // 2)}}
    runs = iter(range(10 ** 6))

    def timed_set(values, before=None):
        def run():
            with ml_dash.Experiment(prefix=f"bench/api/params{next(runs)}", dash_root=root).run as exp:
                if before is not None:
                    exp.params.set(**before)
                start = time.perf_counter()
                exp.params.set(**values)
                return (time.perf_counter() - start) * 1e3
        return run

    return interleaved(repeats, [
        (f"json.dump + fsync of {keys} keys", lambda: json_floor(os.path.join(root, "p.json"), flat)),
        (f"ml_dash params.set, {keys} keys", timed_set(flat)),
        (f"ml_dash params.set, {keys // 2} nested pairs", timed_set(nested)),
        (f"ml_dash params.set, 1 key into {keys}", timed_set({"lr": 0.1}, before=flat)),
    ])


def write_file(path, size):
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for _ in range(size >> 20):
            handle.write(chunk)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(4 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def copy_fsync(source, target):
    shutil.copyfile(source, target)
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())


def file_figures(root, megabytes, repeats):
    size = megabytes << 20
    source = os.path.join(root, "source.bin")
    write_file(source, size)
    directory = fresh(root, "files")
    exp = ml_dash.Experiment(prefix="bench/api/files", dash_root=directory)
    exp.run.start()
    out = os.path.join(root, "out")
    os.makedirs(out, exist_ok=True)

    def timed(function):
        def run():
            start = time.perf_counter()
            function()
            return megabytes / (time.perf_counter() - start)
        return run

    try:
        figures = interleaved(repeats, [
            ("shutil.copyfile", timed(lambda: shutil.copyfile(source, os.path.join(out, "c.bin")))),
            ("shutil.copyfile + fsync", timed(lambda: copy_fsync(source, os.path.join(out, "f.bin")))),
            ("sha256 of the file alone (cached)", timed(lambda: sha256_of(source))),
            ("ml_dash files.upload (sha256, fsync, record)",
             timed(lambda: exp.files("models").upload(source, to="big.bin"))),
            ("ml_dash files.download (sha256 verified)",
             timed(lambda: exp.files("models/big.bin").download(to=os.path.join(out, "d.bin")))),
        ])
        with open(source, "rb") as a, open(os.path.join(out, "d.bin"), "rb") as b:
            assert a.read() == b.read()
    finally:
        exp.run.complete()
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 5)
    calls = 5_000 if args.quick else 100_000
    values_per_key = 1_000 if args.quick else 10_000
    megabytes = 8 if args.quick else 100
    root = tempfile.mkdtemp(prefix="ml_dash-bench-api-")
    try:
        print(f"ml_dash {ml_dash.__version__}, numpy {np.__version__}, Python "
              f"{sys.version.split()[0]}; {repeats} rounds")
        floor = "floor: list append of kwargs"
        # Each round's ratio compares two runs a moment apart, which a shared
        # machine's changing load disturbs less than the medians do.
        rounds = repeats * 2
        buffer_figures = interleaved(rounds, [
            (floor, lambda: floor_list_append(calls)),
            ("ml_dash buffer()", lambda: ml_dash_buffer(fresh(root, "buf"), calls))])
        report(f"buffer(loss, accuracy), microseconds per call ({calls} calls x {rounds})",
               "us", buffer_figures, baseline=floor)
        ratios = [ours / base for ours, base in zip(buffer_figures["ml_dash buffer()"],
                                                     buffer_figures[floor])]
        print(f"  median of per-round ratios: {statistics.median(ratios):.2f}x the floor "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
        summary = summary_figures(fresh(root, "sum"), values_per_key, repeats)
        for label in ("mean", "all 13"):
            report(f"log_summary over {values_per_key} values x 2 keys, {label}, milliseconds",
                   "ms", {k: v for k, v in summary.items() if k.endswith(label)},
                   baseline=f"statistics module, {label}")
        keys = 1_000 if args.quick else 10_000
        report(f"params, milliseconds per set ({keys} keys)", "ms",
               params_figures(fresh(root, "params"), keys, repeats),
               baseline=f"json.dump + fsync of {keys} keys")
        report(f"a {megabytes} MB file, MB/s (higher is better)", "MB/s",
               file_figures(root, megabytes, repeats), baseline="shutil.copyfile")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
