"""The ``ml-dash`` command line, run as a real subprocess (``python -m ml_dash``)."""

import json
import os
import re
import subprocess
import sys

import pytest
from test_analysis import make_run

import ml_dash
from ml_dash import Experiment


def cli(*args, dash_root=None, cwd=None, check=True):
    command = [sys.executable, "-m", "ml_dash", *args]
    if dash_root is not None:
        command += ["--dash-root", dash_root]
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"{command} exited {done.returncode}: {done.stderr}")
    return done


@pytest.fixture
def runs(dash_root):
    make_run(dash_root, "alice/proj/lr-0.1", steps=120, eval_every=60)
    make_run(dash_root, "alice/proj/lr-0.01", steps=80, eval_every=40)
    return dash_root


def test_help_for_the_command_and_every_subcommand():
    assert "ls" in cli("--help").stdout
    for name in ("ls", "show", "read", "export", "plot", "check", "compact", "demo"):
        out = cli(name, "--help").stdout
        assert out.startswith(f"usage: ml-dash {name}") and "--dash-root" in out


def test_ls_lists_runs_and_filters_by_pattern(runs):
    out = cli("ls", dash_root=runs).stdout.splitlines()
    assert out[0].split()[:5] == ["PREFIX", "STATUS", "STARTED", "ENDED", "POINTS"]
    assert [line.split()[0] for line in out[1:]] == ["alice/proj/lr-0.01", "alice/proj/lr-0.1"]
    assert "train:120" in out[2] and "COMPLETED" in out[2]
    listing = json.loads(cli("ls", "**/lr-0.1", "--json", dash_root=runs).stdout)
    assert [r["prefix"] for r in listing] == ["alice/proj/lr-0.1"]
    empty = cli("ls", "bob/**", dash_root=runs)
    assert empty.stdout == "" and "no runs matching 'bob/**'" in empty.stderr


def test_show_prints_streams_with_first_and_last_values(runs):
    out = cli("show", "alice/proj/lr-0.1", dash_root=runs).stdout
    assert out.startswith("alice/proj/lr-0.1  COMPLETED")
    train = next(line for line in out.splitlines() if line.startswith("train"))
    assert "120" in train and "loss=1, step=0" in train and "step=119" in train
    assert "note=eval 59" in out


def test_read_a_page_the_tail_and_json(runs):
    out = cli("read", "alice/proj/lr-0.1", "train", "--start", "5", "--limit", "3",
              dash_root=runs).stdout.splitlines()
    assert out[0].split()[:3] == ["INDEX", "CREATED", "loss"]
    assert [line.split()[0] for line in out[1:]] == ["5", "6", "7"]
    out = cli("read", "alice/proj/lr-0.1", "train", "--tail", "2", dash_root=runs).stdout
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["118", "119"]
    rows = [json.loads(line) for line in
            cli("read", "alice/proj/lr-0.1", ".", "--limit", "2", "--json", dash_root=runs).stdout.splitlines()]
    assert [r["data"]["step"] for r in rows] == [0, 1]


def test_read_follow_prints_points_of_a_live_run_until_it_ends(dash_root):
    exp = Experiment(prefix="alice/proj/live", dash_root=dash_root)
    exp.run.start()
    exp.metrics.log(step=0).flush()  # "train" does not exist yet: the follower waits for it
    follower = subprocess.Popen(
        [sys.executable, "-m", "ml_dash", "read", "alice/proj/live", "train", "-f", "--json",
         "--interval", "0.05", "--dash-root", dash_root],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The handshake: the follower says it waits for the stream before it is created.
        assert "waiting for the first points of stream 'train'" in follower.stderr.readline()
        exp.metrics("train").log(i=0).flush()
        assert json.loads(follower.stdout.readline())["data"]["i"] == 0
        for i in range(1, 30):
            exp.metrics("train").log(i=i).flush()
        exp.run.complete()
        rest = follower.communicate(timeout=60)[0].splitlines()
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0
    assert [json.loads(line)["data"]["i"] for line in rest] == list(range(1, 30))


def test_unknown_runs_streams_and_keys_name_the_close_matches(runs, tmp_path):
    done = cli("show", "alice/proj/lr-01", dash_root=runs, check=False)
    assert done.returncode == 1
    assert "no run 'alice/proj/lr-01'" in done.stderr and "alice/proj/lr-0.1" in done.stderr
    done = cli("read", "alice/proj/lr-0.1", "trian", dash_root=runs, check=False)
    assert done.returncode == 1 and "no stream 'trian'; did you mean train?" in done.stderr
    done = cli("plot", "alice/proj/lr-0.1", "train", "los", "-o", str(tmp_path / "p.png"),
               dash_root=runs, check=False)
    assert done.returncode == 1 and "no column 'los'; did you mean loss?" in done.stderr
    assert "Traceback" not in done.stderr


def test_export_with_a_progress_bar(runs, tmp_path):
    out = tmp_path / "run.jsonl"
    done = cli("export", "alice/proj/lr-0.1", "-o", str(out), "--progress", dash_root=runs)
    assert done.stdout.strip() == f"wrote 242 points to {out}"
    assert "100.0% 242/242 points" in done.stderr
    assert len(out.read_text().splitlines()) == 242
    done = cli("export", "alice/proj/lr-0.01", "--format", "parquet", dash_root=runs, cwd=tmp_path)
    assert (tmp_path / "alice_proj_lr-0.01.parquet").exists() and done.stderr == ""


def test_plot_compares_runs(runs, tmp_path):
    out = tmp_path / "loss.png"
    done = cli("plot", "alice/proj/lr-0.1", "train", "loss", "-o", str(out),
               "--compare", "alice/proj/*", "--method", "lttb", dash_root=runs)
    assert done.stdout.strip() == f"wrote {out} (2 runs)"
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_show_prints_params_and_recent_logs(dash_root):
    with Experiment(prefix="alice/proj/full", dash_root=dash_root).run as exp:
        exp.params.set(lr=0.1, model={"depth": 4})
        exp.metrics("train").log(loss=0.5).flush()
        exp.logs.info("training done", steps=1)
    out = cli("show", "alice/proj/full", dash_root=dash_root).stdout
    params = out.split("params\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split() for line in params] == [["KEY", "VALUE"], ["lr", "0.1"], ["model.depth", "4"]]
    assert out.rstrip().endswith("[INFO] training done steps=1")


def test_check_finds_and_repairs_a_damaged_column_and_compact_shrinks(runs):
    assert "ok, 242 points" in cli("check", "alice/proj/lr-0.1", dash_root=runs).stdout
    [loss_file] = [os.path.join(folder, name)
                   for folder, _, names in os.walk(os.path.join(runs, "alice/proj/lr-0.1", "columns"))
                   for name in names if name == "1.f64" and folder.endswith(os.sep + "2")]
    with open(loss_file, "r+b") as f:
        f.write(b"\xff" * 64)  # garble the first 8 values of a column
    done = cli("check", "alice/proj/lr-0.1", dash_root=runs, check=False)
    assert done.returncode == 1 and "problem:" in done.stdout
    done = cli("check", "alice/proj/lr-0.1", "--repair", dash_root=runs)
    assert "repaired:" in done.stdout
    assert "ok" in cli("check", "alice/proj/lr-0.1", dash_root=runs).stdout
    out = cli("compact", "alice/proj/lr-0.1", dash_root=runs).stdout
    assert re.fullmatch(r"compacted alice/proj/lr-0.1: [\d,]+ -> [\d,]+ bytes\n", out)


def test_demo_logs_into_dash_root(tmp_path):
    root = str(tmp_path / "dash")
    cli("demo", "--steps", "200", dash_root=root)
    assert [r["prefix"] for r in ml_dash.list_experiments(root)] == ["demo/synthetic/run"]
