"""Params and last values where users look: ``list_experiments``, ``where=`` and ``ml-dash ls``.

Also the summary a writer saves at close: a listing reads it only while no
commit has come since, so what it lists is what the store holds.
"""

import json
import os

import pytest
from test_cli import cli

import ml_dash
from ml_dash import Experiment

ODD = {"model": {"depth": 4, "layers": [64, 64], "act": None}, "lr": "0.1", "seed": 7,
       "flags": {"fast": True}, "note": "it's \"quoted\""}


def _run(dash_root, prefix, params, steps=30, status="complete", val_every=10):
    exp = Experiment(prefix=prefix, dash_root=dash_root)
    exp.run.start()
    exp.params.set(**params)
    for step in range(steps):
        exp.metrics("train").log(loss=1.0 / (step + 1), step=step)
        if step % val_every == 0:
            exp.metrics.log(val=float(step))
    getattr(exp.run, status)()


@pytest.fixture
def sweep(dash_root):
    _run(dash_root, "team/sweep/odd", ODD, steps=25)
    for i, lr in enumerate([0.001, 0.01, 0.1]):
        _run(dash_root, f"team/sweep/lr-{i}", {"lr": lr, "model": {"depth": i}},
             status="fail" if i == 2 else "complete")
    return dash_root


def _by_prefix(runs):
    return {run["prefix"]: run for run in runs}


def test_the_listing_carries_flat_params_and_last_values(sweep):
    runs = _by_prefix(ml_dash.list_experiments(sweep))
    odd = runs["team/sweep/odd"]
    assert odd["params"] == {"flags.fast": True, "lr": "0.1", "model.act": None, "model.depth": 4,
                             "model.layers": [64, 64], "note": "it's \"quoted\"", "seed": 7}
    # the root stream's keys as they are, the other streams' as stream/key
    assert odd["last"] == {"val": 20.0, "train/loss": 1 / 25, "train/step": 24.0}
    assert runs["team/sweep/lr-1"]["params"] == {"lr": 0.01, "model.depth": 1}


def test_a_key_missing_from_the_last_point_keeps_its_last_value(dash_root):
    with Experiment(prefix="a/b/sparse", dash_root=dash_root).run as exp:
        for step in range(2000):
            fields = {"loss": float(step)}
            if step == 3:
                fields["rare"] = 42.0
            exp.metrics.log(**fields)
        exp.metrics.log(other=1)
    (run,) = ml_dash.list_experiments(dash_root)
    assert run["last"] == {"loss": 1999.0, "rare": 42.0, "other": 1.0}


@pytest.mark.parametrize("where, expected", [
    ("params.lr > 0.005", ["lr-1", "lr-2"]),
    ("params.lr > 0.005 and status == 'COMPLETED'", ["lr-1"]),
    ("params.model.depth == 4 or params['model.depth'] == 0", ["lr-0", "odd"]),
    ("params.lr == '0.1'", ["odd"]),            # a string that looks like a number is a string
    ("params.lr >= 0.1", ["lr-2"]),             # ... and is not compared with numbers
    ("params.nothing == None and params.seed == 7", ["odd"]),
    ("params.nothing > 1", []),                 # a param no run has: no error, no run
    ("not params.model.layers", ["lr-0", "lr-1", "lr-2"]),
    ("64 in params.model.layers", ["odd"]),
    ("last['train/loss'] * 2 < 0.1 and last.val >= 20", ["odd", "lr-0", "lr-1", "lr-2"]),
    ("status in ['FAILED', 'CANCELLED']", ["lr-2"]),
    ("-params.lr < -0.05 and params.lr / 0 == None", ["lr-2"]),
])
def test_where_filters_by_params_fields_and_last_values(sweep, where, expected):
    runs = ml_dash.list_experiments(sweep, where=where)
    assert sorted(run["prefix"].rsplit("/", 1)[1] for run in runs) == sorted(expected)


def test_where_takes_a_callable(sweep):
    runs = ml_dash.list_experiments(sweep, where=lambda run: run["params"].get("seed") == 7)
    assert [run["prefix"] for run in runs] == ["team/sweep/odd"]


@pytest.mark.parametrize("where", [
    "__import__('os').system('true')", "params.lr()", "().__class__", "lr > 1",
    "params[0] > 1", "lambda: 1", "[x for x in tags]", "2 ** 1000 ** 1000", "params.lr >",
    "status := 1", "{1: 2}", "tags[0] == 'a'", "not " * 3000 + "status", "(" * 500 + "1" + ")" * 500,
    "1 or " * 5000 + "1",
])
def test_a_where_outside_the_language_is_refused_at_the_call(dash_root, where):
    # no run exists: the expression is checked before any run is read
    with pytest.raises(ValueError, match="where="):
        ml_dash.list_experiments(dash_root, where=where)


@pytest.mark.parametrize("levels, nots", [(150, 5), (100, 8), (50, 18)])
def test_a_filter_nested_past_what_its_walk_takes_is_refused_not_a_recursion_error(sweep, levels,
                                                                                     nots):
    # each level of brackets holds an `and` and a run of `not`: short enough for the parser and
    # the check, the walk over a run's values went deeper and raised RecursionError mid-listing
    where = "prefix"
    for _ in range(levels):
        where = "(prefix and " + "not " * nots + where + ")"
    with pytest.raises(ValueError, match="nested too deeply"):
        ml_dash.list_experiments(sweep, where=where)


def test_where_of_another_type_is_refused(dash_root):
    with pytest.raises(TypeError, match="where= must be an expression"):
        ml_dash.list_experiments(dash_root, where=3)


def test_a_summary_is_saved_at_close_and_the_listing_equals_the_store(sweep):
    with_summaries = ml_dash.list_experiments(sweep)
    paths = [os.path.join(run["path"], "summary.json") for run in with_summaries]
    assert all(os.path.exists(p) for p in paths)
    for path in paths:
        os.unlink(path)
    assert ml_dash.list_experiments(sweep) == with_summaries


def test_a_stale_or_damaged_summary_is_not_used(sweep):
    prefix = "team/sweep/lr-0"
    path = os.path.join(_by_prefix(ml_dash.list_experiments(sweep))[prefix]["path"], "summary.json")
    with open(path, "rb") as f:
        saved = f.read()
    ml_dash.annotate(prefix, dash_root=sweep, add_tags=["best"])  # a commit after the summary
    os.replace(path, path + ".kept")
    with open(path, "wb") as f:
        f.write(saved)  # the summary of before the tag, as if the annotation had not saved one
    assert _by_prefix(ml_dash.list_experiments(sweep))[prefix]["tags"] == ["best"]
    for damage in (b"", b"{not json", json.dumps({"format": 1}).encode(), b"[1, 2]"):
        with open(path, "wb") as f:
            f.write(damage)
        run = _by_prefix(ml_dash.list_experiments(sweep))[prefix]
        assert run["status"] == "COMPLETED" and run["params"] == {"lr": 0.001, "model.depth": 0}
    # a summary saved with a false status but the right snapshot is refused when malformed
    summary = json.loads(open(path + ".kept").read())
    summary["streams"] = "many"
    with open(path, "w") as f:
        json.dump(summary, f)
    assert _by_prefix(ml_dash.list_experiments(sweep))[prefix]["points"] == 33


def _set(part, index, value):
    def damage(summary):
        summary[part][index] = value
    return damage


def _set_in_all(part, index, value):
    def damage(summary):
        for entry in summary[part]:
            entry[index] = value
    return damage


@pytest.mark.parametrize("damage", [
    _set("record", "launchCount", "x"), _set("record", "writer", 5), _set("record", "tags", 5),
    _set("record", "tags", [{"a": 1}]), _set("record", "status", 3), _set("record", "description", [1]),
    _set_in_all("streams", 0, ["a"]), _set_in_all("streams", 1, -3), _set_in_all("last", 0, 5),
    _set("tracks", "topic", "many"), _set_in_all("columns", 1, -1),
])
def test_a_summary_of_the_right_snapshot_but_wrong_shapes_is_not_used(sweep, damage):
    # a summary.json edited or damaged in place while the store stayed as it was: the listing,
    # `ls`, the table and the columns must come from the store, not fail and not read past a column
    prefix = "team/sweep/lr-0"
    before = _by_prefix(ml_dash.list_experiments(sweep))[prefix]
    path = os.path.join(before["path"], "summary.json")
    with open(path) as f:
        summary = json.load(f)
    damage(summary)
    with open(path, "w") as f:
        json.dump(summary, f)
    assert _by_prefix(ml_dash.list_experiments(sweep))[prefix] == before
    assert len(ml_dash.runs_table(prefix, dash_root=sweep)) == 33
    assert cli("ls", "--dash-root", sweep).returncode == 0


def test_a_relaunched_run_is_read_from_its_store(sweep):
    prefix = "team/sweep/lr-1"
    exp = Experiment(prefix=prefix, dash_root=sweep)
    exp.run.start()
    exp.params.set(lr=0.5)
    exp.metrics.log(val=99.0).flush()
    run = _by_prefix(ml_dash.list_experiments(sweep))[prefix]
    assert run["status"] == "RUNNING" and run["params"]["lr"] == 0.5 and run["last"]["val"] == 99.0
    exp.run.complete()
    run = _by_prefix(ml_dash.list_experiments(sweep))[prefix]
    assert run["status"] == "COMPLETED" and run["launches"] == 2


def test_a_damaged_run_is_listed_unreadable_despite_its_summary(sweep):
    prefix = "team/sweep/lr-0"
    directory = _by_prefix(ml_dash.list_experiments(sweep))[prefix]["path"]
    data = os.path.join(directory, "data.mdb")
    os.truncate(data, os.path.getsize(data) // 2)
    runs = _by_prefix(ml_dash.list_experiments(sweep))
    assert runs[prefix]["status"] == "UNREADABLE" and "truncated" in runs[prefix]["error"]
    assert runs[prefix]["params"] == {} and runs["team/sweep/lr-1"]["status"] == "COMPLETED"
    assert ml_dash.list_experiments(sweep, where="status == 'UNREADABLE'")[0]["prefix"] == prefix


def test_ls_shows_chosen_params_and_filters(sweep):
    out = cli("ls", "--param", "lr", "--param", "model.depth", "--where", "params.lr > 0.005",
              dash_root=sweep).stdout.splitlines()
    assert out[0].split()[:4] == ["PREFIX", "STATUS", "lr", "model.depth"]
    assert [line.split()[:4] for line in out[1:]] == [["team/sweep/lr-1", "COMPLETED", "0.01", "1"],
                                                       ["team/sweep/lr-2", "FAILED", "0.1", "2"]]
    listed = json.loads(cli("ls", "--json", "--where", "params.seed == 7", dash_root=sweep).stdout)
    assert [run["prefix"] for run in listed] == ["team/sweep/odd"]
    assert listed[0]["params"]["model.layers"] == [64, 64]
    bad = cli("ls", "--where", "open('x')", dash_root=sweep, check=False)
    assert bad.returncode == 1 and "open('x')" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_runs_table_carries_params_and_takes_where(sweep):
    pytest.importorskip("pandas")
    df = ml_dash.runs_table(dash_root=sweep, params=True, where="params.model.depth != 4",
                            streams=["train"])
    assert sorted(df["run"].unique()) == ["team/sweep/lr-0", "team/sweep/lr-1", "team/sweep/lr-2"]
    firsts = df.groupby("run", observed=True).first()
    assert firsts["params.lr"].tolist() == [0.001, 0.01, 0.1]
    assert firsts["params.model.depth"].tolist() == [0.0, 1.0, 2.0]
    odd = ml_dash.runs_table("team/sweep/odd", dash_root=sweep, params=["lr", "model.layers", "absent"],
                             to="numpy")
    assert set(odd["params.lr"]) == {"0.1"} and set(odd["params.model.layers"]) == {"[64, 64]"}
    assert all(v != v for v in odd["params.absent"])  # NaN: no run has it
