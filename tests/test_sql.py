"""``ml_dash.sql`` and ``ml-dash sql``: DuckDB over runs, params, metrics and logs.

Live runs are real writer processes; column files are damaged on purpose to
show which runs and columns a query opens.
"""

import json
import math
import os
import subprocess
import sys

import pytest
from test_cli import cli

import ml_dash
from ml_dash import Experiment

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

QUOTED = "o'brien/pr\"oj/run; drop table runs"


@pytest.fixture
def runs(dash_root):
    for i, lr in enumerate([0.1, 0.01]):
        with Experiment(prefix=f"alice/proj/lr-{lr}", dash_root=dash_root, tags=["sweep"]).run as exp:
            exp.params.set(lr=lr, model={"depth": i + 2, "name": f"m{i}"}, batch="32")
            for step in range(10):
                exp.metrics("train").log(loss=1.0 / (step + 1) + i, step=step)
            exp.metrics.log(epoch=0, acc=0.5 + i / 10)
            if i == 1:
                exp.metrics("eval").log(only_here=7.0)
            exp.logs.info("started", epoch=0)
            exp.logs.error("diverged")
    with Experiment(prefix=QUOTED, dash_root=dash_root).run as exp:
        exp.params.set(**{"it's \"key\"": 1.5, "lr": None})
        exp.metrics.log(**{"it's \"loss\"": 3.0})
    return dash_root


def _rows(query, root, pattern=None):
    return ml_dash.sql(query, pattern=pattern, dash_root=root).fetchall()


def test_runs_table(runs):
    rows = _rows("select prefix, owner, project, name, status, tags, points, launches, "
                 "ended_at >= started_at from runs order by prefix", runs)
    assert rows[0] == ("alice/proj/lr-0.01", "alice", "proj", "lr-0.01", "COMPLETED", ["sweep"], 12, 1, True)
    assert rows[1][0] == "alice/proj/lr-0.1" and rows[1][6] == 11
    assert rows[2][:4] == (QUOTED, "o'brien", "pr\"oj", "run; drop table runs")


def test_params_long_and_wide(runs):
    long = _rows("select key, value, number, type from params where prefix = 'alice/proj/lr-0.1' "
                 "order by key", runs)
    assert long == [("batch", "32", None, "str"), ("lr", "0.1", 0.1, "float"),
                    ("model.depth", "2", 2.0, "int"), ("model.name", "m0", None, "str")]
    wide = _rows('select prefix, lr, "model.depth", batch, "it\'s ""key""" from params_wide '
                 "order by prefix", runs)
    assert wide == [("alice/proj/lr-0.01", 0.01, 3, "32", None), ("alice/proj/lr-0.1", 0.1, 2, "32", None),
                    (QUOTED, None, None, None, 1.5)]
    types = dict(_rows("select column_name, column_type from (describe params_wide)", runs))
    assert types["lr"] == "DOUBLE" and types["model.depth"] == "BIGINT" and types["batch"] == "VARCHAR"


def test_metrics_union_of_keys_with_null_where_absent(runs):
    rows = _rows("select prefix, stream, count(*), max(loss), max(only_here), max(acc), max(index) "
                 "from metrics group by all order by prefix, stream", runs)
    assert rows[:3] == [("alice/proj/lr-0.01", "", 1, None, None, 0.6, 0),
                        ("alice/proj/lr-0.01", "eval", 1, None, 7.0, None, 0),
                        ("alice/proj/lr-0.01", "train", 10, 2.0, None, None, 9)]
    assert rows[-1] == (QUOTED, "", 1, None, None, None, 0)
    (value,) = _rows('select "it\'s ""loss""" from metrics where prefix = $$' + QUOTED + "$$", runs)
    assert value == (3.0,)
    # the same values as the run's own columns, to the last bit
    view = ml_dash.load("alice/proj/lr-0.1", dash_root=runs)
    column = view.metrics("train").column("loss")
    got = [r[0] for r in _rows("select loss from metrics where prefix = 'alice/proj/lr-0.1' and "
                               "stream = 'train' order by index", runs)]
    assert got == column.tolist()


def test_names_sql_compares_without_case_get_a_suffix(dash_root):
    with Experiment(prefix="a/b/clash", dash_root=dash_root).run as exp:
        exp.params.set(prefix="mine", lr=0.1, LR=0.2)
        exp.metrics.log(loss=1.0, Loss=2.0, index=5.0, stream=6.0)
    # params in key order: LR before lr
    assert _rows("select prefix, prefix_2, LR, lr_2 from params_wide", dash_root) == [
        ("a/b/clash", "mine", 0.2, 0.1)]
    assert _rows("select index, stream, loss, loss_2, index_2, stream_2 from metrics", dash_root) == [
        (0, "", 1.0, 2.0, 5.0, 6.0)]


def test_logs_table(runs):
    rows = _rows("select prefix, index, level, message, metadata from logs order by prefix, index", runs)
    assert rows[:2] == [("alice/proj/lr-0.01", 0, "info", "started", '{"epoch":0}'),
                        ("alice/proj/lr-0.01", 1, "error", "diverged", "{}")]
    (count,) = _rows("select count(*) from logs where time is not null", runs)
    assert count == (4,)


def test_pattern_and_joins(runs):
    rows = _rows("select r.prefix, p.lr, max(m.loss) from runs r join params_wide p using (prefix) "
                 "join metrics m using (prefix) where m.stream = 'train' group by all order by 1",
                 runs, pattern="alice/**")
    assert rows == [("alice/proj/lr-0.01", 0.01, 2.0), ("alice/proj/lr-0.1", 0.1, 1.0)]


def _column_files(directory):
    return [os.path.join(folder, name) for folder, _, names in os.walk(os.path.join(directory, "columns"))
            for name in names]


def test_only_the_runs_and_columns_a_query_names_are_opened(runs):
    # Damage every column file of one run: a question about params or runs does not open
    # them, nor does a metrics query that names other keys only... of other runs.
    directory = ml_dash.list_experiments(runs, "alice/proj/lr-0.1")[0]["path"]
    for path in _column_files(directory):
        os.truncate(path, 0)
    assert len(_rows("select * from params_wide", runs)) == 3
    assert len(_rows("select * from runs", runs)) == 3
    assert _rows("select count(*) from metrics", runs, pattern="alice/proj/lr-0.01") == [(12,)]
    with pytest.raises(ml_dash.StorageError, match="column file"):
        _rows("select max(loss) from metrics", runs)


def test_a_query_duckdb_refuses_is_a_value_error(runs):
    with pytest.raises(ValueError, match="nope"):
        ml_dash.sql("select nope from runs", dash_root=runs)
    with pytest.raises(ValueError, match="ml_dash.sql"):
        ml_dash.sql("selec 1", dash_root=runs)
    with pytest.raises(TypeError, match="query must be a str"):
        ml_dash.sql(None, dash_root=runs)
    with pytest.raises(ValueError, match="the query is empty"):
        ml_dash.sql(" ; ", dash_root=runs)
    with pytest.raises(TypeError, match="pattern must be a str.*got int"):
        ml_dash.sql("select 1", pattern=5, dash_root=runs)
    with pytest.raises(TypeError, match="pattern must be a str.*got int"):
        ml_dash.list_experiments(runs, 5)


def test_statements_other_than_one_select_see_the_tables(runs):
    """DuckDB serialises only a single select: a script of several statements, or a
    ``create table ... as select``, still finds the tables it names."""
    assert _rows("select count(*) from runs; select count(*) from metrics", runs) == \
        _rows("select count(*) from metrics", runs) == [(24,)]  # 12 + 11 + 1 points
    ml_dash.sql("create table t as select * from params", dash_root=runs)  # no error: params is there


LIVE = """
import sys
from ml_dash import Experiment
exp = Experiment(prefix="live/proj/run", dash_root=sys.argv[1])
exp.run.start()
exp.params.set(lr=0.3)
for step in range(100):
    exp.metrics.log(loss=float(step))
exp.flush()
for step in range(50):
    exp.metrics.log(loss=-1.0)   # staged, not flushed
print("ready", flush=True)
sys.stdin.read()
exp.run.complete()
"""


def test_a_live_run_shows_its_committed_snapshots(dash_root):
    writer = subprocess.Popen([sys.executable, "-c", LIVE, dash_root], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, ML_DASH_FLUSH_INTERVAL="600"))
    try:
        assert writer.stdout.readline().strip() == "ready"
        assert _rows("select count(*), min(loss), max(loss) from metrics", dash_root) == [(100, 0.0, 99.0)]
        assert _rows("select status, lr from runs join params_wide using (prefix)", dash_root) == [
            ("RUNNING", 0.3)]
    finally:
        writer.stdin.close()
        assert writer.wait(timeout=60) == 0
    assert _rows("select status, points from runs", dash_root) == [("COMPLETED", 150)]
    assert _rows("select count(*), min(loss) from metrics", dash_root) == [(150, -1.0)]


def test_nan_and_absent_points_are_null_and_a_logged_nan_too(dash_root):
    with Experiment(prefix="a/b/nan", dash_root=dash_root).run as exp:
        exp.metrics.log(loss=1.0)
        exp.metrics.log(loss=math.nan)
        exp.metrics.log(other=2.0)
    assert _rows("select count(loss), max(loss), count(*) from metrics", dash_root) == [(1, 1.0, 3)]


def test_the_sql_command_prints_table_csv_and_json(runs):
    query = "select prefix, lr from params_wide where lr is not null order by prefix"
    table = cli("sql", query, dash_root=runs).stdout.splitlines()
    assert table[0].split() == ["prefix", "lr"] and table[1].split() == ["alice/proj/lr-0.01", "0.01"]
    csv = cli("sql", query, "--format", "csv", dash_root=runs).stdout
    assert csv == "prefix,lr\nalice/proj/lr-0.01,0.01\nalice/proj/lr-0.1,0.1\n"
    listed = json.loads(cli("sql", "select prefix, started_at, tags from runs order by prefix",
                            "--format", "json", "--pattern", "alice/**", dash_root=runs).stdout)
    assert [r["prefix"] for r in listed] == ["alice/proj/lr-0.01", "alice/proj/lr-0.1"]
    assert listed[0]["tags"] == ["sweep"] and listed[0]["started_at"].startswith("20")
    bad = cli("sql", "select * from nowhere", dash_root=runs, check=False)
    assert bad.returncode == 1 and "nowhere" in bad.stderr and bad.stderr.startswith("ml-dash sql: error:")


BLOCKED = """
import sys
sys.modules["duckdb"] = None     # as if it were not installed
import ml_dash
try:
    ml_dash.sql("select 1")
except ImportError as exc:
    print(exc)
"""


def test_without_duckdb_the_error_says_how_to_install_it(tmp_path):
    from ml_dash.extras import install_hint
    out = subprocess.run([sys.executable, "-c", BLOCKED], cwd=tmp_path, text=True,
                         capture_output=True, check=True).stdout.strip()
    assert out == f"ml_dash.sql() this needs duckdb, from the 'sql' extra: {install_hint('sql')}"
