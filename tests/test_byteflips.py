"""Random byte flips in a stored run, as a bad disk or a bad copy makes them.

Each flip is applied to a fresh copy of one reference run, then reads,
``check()`` and ``list_experiments()`` run on it in a child process, so that
a signal (SIGBUS, SIGSEGV, SIGABRT) is seen as a failure of that flip
instead of killing the test run.  Three kinds of flips:

``value``   a byte inside a stored point (the MessagePack bytes or their
            checksum): every read either returns the right data or raises
            ``CorruptStoreError``; ``check()`` reports it.
``column``  a byte of a committed column slot: rows still read right, and
            ``check()`` reports the column (columns are derived data, not
            verified when read: that is ``check()``'s job).
``page``    a byte anywhere in ``data.mdb``, LMDB's own page headers
            included: ``check()`` returns a report, it never raises or dies.

``ML_DASH_FLIPS=1000`` runs 1,000 flips (CI runs 99, a third of each kind); ``-s`` shows a summary.
"""

import json
import os
import random
import subprocess
import sys
import textwrap

import lmdb

import ml_dash
from ml_dash import Experiment

PREFIX = "flip/proj/run"
FLIPS = int(os.environ.get("ML_DASH_FLIPS", "99"))
KINDS = ("value", "column", "page")
COMMITTED = {"1": 300, "2": 100, "3": 300}  # points of train, eval and the root (ids in creation order)

CHILD = textwrap.dedent("""
    import json, os, shutil, sys
    import numpy as np
    import ml_dash

    reference, scratch, prefix, expected_path = sys.argv[1:5]
    expected = json.load(open(expected_path))

    def outcome(call):
        try:
            return call()
        except ml_dash.MLDashError as exc:
            return "error:" + type(exc).__name__
        except Exception as exc:
            return f"raw:{type(exc).__name__}: {exc}"

    def rows_right():
        with ml_dash.load(prefix, dash_root=scratch) as view:
            for name, rows in expected["rows"].items():
                stream = view.metrics(name or None)
                got = [[r["index"], r["data"], r["createdAt"]] for r in stream.read(limit=100000)["data"]]
                if got != rows:
                    return "wrong"
                stream.stats()
        return "correct"

    def columns_right():
        with ml_dash.load(prefix, dash_root=scratch) as view:
            for name, columns in expected["columns"].items():
                for key, values in columns.items():
                    if not np.array_equal(view.metrics(name or None).column(key), values, equal_nan=True):
                        return "wrong"
        return "correct"

    def check():
        report = ml_dash.check(prefix, dash_root=scratch)
        return "ok" if report.ok else "problems"

    def listing():
        runs = ml_dash.list_experiments(scratch)
        return runs[0]["status"] if len(runs) == 1 else f"wrong: {runs}"

    for line in sys.stdin:
        job = json.loads(line)
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(reference, scratch)
        path = os.path.join(scratch, *prefix.split("/"), job["file"])
        with open(path, "r+b") as f:
            f.seek(job["offset"])
            byte = f.read(1)[0]
            f.seek(job["offset"])
            f.write(bytes([byte ^ job["xor"]]))
        result = {"job": job["job"]}
        print(json.dumps(dict(result, started=True)), flush=True)
        if job["kind"] != "page":
            result.update(rows=outcome(rows_right), columns=outcome(columns_right), listing=outcome(listing))
        result["check"] = outcome(check)
        print(json.dumps(result), flush=True)
""")


def build_reference(root):
    """A closed run of three streams with numbers, strings and nested values, compacted
    so that each point is stored exactly once in the file."""
    with Experiment(prefix=PREFIX, dash_root=root).run as exp:
        exp.params.set(lr=0.1, model=dict(depth=4))
        for i in range(300):
            exp.metrics("train").log(i=i, loss=1.5 / (i + 1), note=f"step {i}", lr={"base": 0.1 + i})
            if i % 3 == 0:
                exp.metrics("eval").log(i=i, acc=0.25 + i / 1000, tag="é" * (i % 5))
            exp.metrics.log(epoch=i // 100 + 1)
        exp.flush()
    ml_dash.compact(PREFIX, dash_root=root)
    run = os.path.join(root, *PREFIX.split("/"))
    with ml_dash.load(PREFIX, dash_root=root) as view:
        expected = {"rows": {}, "columns": {}}
        for name in ("train", "eval", None):
            stream = view.metrics(name)
            expected["rows"][name or ""] = [[r["index"], r["data"], r["createdAt"]]
                                            for r in stream.read(limit=100000)["data"]]
            expected["columns"][name or ""] = {k: stream.column(k).tolist() for k in stream.keys()}
        counts = {name: len(view.metrics(name)) for name in ("train", "eval", None)}
    return run, expected, counts


def point_values(run):
    """The bytes of every stored point, read straight from LMDB."""
    env = lmdb.open(run, readonly=True, lock=False, max_dbs=64)
    try:
        values = []
        with env.begin() as txn:
            names = [key for key, _ in txn.cursor() if key.startswith(b"s:")]
        for name in names:
            with env.begin(db=env.open_db(name, create=False)) as txn:
                values.extend(bytes(value) for _, value in txn.cursor())
        return values
    finally:
        env.close()


def plan_flips(run, count, seed):
    """``count`` flips spread over the three kinds: (kind, file, offset, xor)."""
    rng = random.Random(seed)
    data = open(os.path.join(run, "data.mdb"), "rb").read()
    located = []
    for value in point_values(run):
        at = data.find(value)
        assert at >= 0 and data.find(value, at + 1) < 0  # compacted: stored once
        located.append((at, len(value)))
    columns = []
    for folder, _, names in os.walk(os.path.join(run, "columns")):
        columns.extend(os.path.relpath(os.path.join(folder, name), run) for name in names)
    jobs = []
    for number in range(count):
        kind = KINDS[number % len(KINDS)]
        if kind == "value":
            at, length = rng.choice(located)
            target, offset = "data.mdb", at + rng.randrange(length)
        elif kind == "column":
            target = rng.choice(columns)
            stream_id = target.split(os.sep)[1]
            offset = rng.randrange(COMMITTED[stream_id] * 8)  # a slot of a committed point
        else:
            target, offset = "data.mdb", rng.randrange(len(data))
        jobs.append({"job": number, "kind": kind, "file": target, "offset": offset,
                     "xor": rng.randrange(1, 256)})
    return jobs


def run_flips(tmp_path, jobs, expected):
    """Results per job; a job whose child died has ``died`` set to the exit status."""
    reference = str(tmp_path / "reference")
    expected_path = tmp_path / "expected.json"
    expected_path.write_text(json.dumps(expected))
    results, pending = {}, list(jobs)
    while pending:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, reference, str(tmp_path / "scratch"), PREFIX, str(expected_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            out, _ = child.communicate("".join(json.dumps(job) + "\n" for job in pending), timeout=600)
        finally:
            child.kill()
        started = None
        for line in out.splitlines():
            result = json.loads(line)
            if result.pop("started", False):
                started = result["job"]
            else:
                results[result["job"]] = result
                started = None
        if child.returncode != 0:
            assert started is not None, f"the child failed outside a job: {child.returncode}"
            results[started] = {"job": started, "died": child.returncode}
        pending = [job for job in pending if job["job"] not in results]
    return results


def failures(job, result):
    """What is wrong with one flip's outcome (empty when it was handled)."""
    if "died" in result:
        return [f"died with {result['died']}"]
    wrong = [f"{what}: {got}" for what, got in result.items() if str(got).startswith("raw:")]
    if result["check"] not in ("ok", "problems"):
        wrong.append(f"check: {result['check']}")
    if job["kind"] == "value":
        if result["rows"] not in ("correct", "error:CorruptStoreError") or result["columns"] != "correct":
            wrong.append(f"reads: {result['rows']}, {result['columns']}")
        if result["check"] != "problems":
            wrong.append("check() did not report the damaged point")
    if job["kind"] == "column":
        if result["rows"] != "correct":
            wrong.append(f"rows: {result['rows']}")
        if result["columns"] == "wrong" and result["check"] != "problems":
            wrong.append("check() did not report the damaged column")
    if job["kind"] != "page" and result["listing"] not in ("COMPLETED", "UNREADABLE"):
        wrong.append(f"listing: {result['listing']}")
    return wrong


def test_random_byte_flips_end_in_right_data_or_an_ml_dash_error(tmp_path):
    run, expected, counts = build_reference(str(tmp_path / "reference"))
    assert [counts["train"], counts["eval"], counts[None]] == list(COMMITTED.values())
    jobs = plan_flips(run, FLIPS, seed=20261201)
    results = run_flips(tmp_path, jobs, expected)
    bad = {job["job"]: (job, failures(job, results[job["job"]])) for job in jobs}
    bad = {number: found for number, found in bad.items() if found[1]}
    summary = {kind: {} for kind in KINDS}
    for job in jobs:
        result = results[job["job"]]
        key = "died" if "died" in result else f"rows={result.get('rows', '-')} check={result['check']}"
        summary[job["kind"]][key] = summary[job["kind"]].get(key, 0) + 1
    print(json.dumps(summary, indent=1))
    assert not bad, list(bad.values())[:5]
