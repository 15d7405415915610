"""Managing runs from the command line: ``rm``, ``mv``, globs for ``check`` and ``compact``,
``--version``, ``ls`` times, and what ``show`` and ``read -f`` print when keys change.

Live runs are real writer processes; the kill tests kill real ``ml-dash`` processes.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from test_analysis import make_run
from test_cli import cli

import ml_dash
from ml_dash import Experiment

# A writer in its own process: it logs, says "ready", and holds the run open until its
# stdin closes.
WRITER = """
import sys
from ml_dash import Experiment
exp = Experiment(prefix=sys.argv[1], dash_root=sys.argv[2])
exp.run.start()
exp.metrics("train").log(loss=0.5).flush()
print("ready", flush=True)
sys.stdin.read()
exp.run.complete()
"""


@pytest.fixture
def live_writer(dash_root):
    """Start a writer process on a prefix; it is ended at the end of the test."""
    started = []

    def start(prefix):
        process = subprocess.Popen([sys.executable, "-c", WRITER, prefix, dash_root],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "ready"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.stdin.close()
            process.wait(timeout=60)


def points_of(dash_root, prefix):
    with ml_dash.load(prefix, dash_root=dash_root) as view:
        return {name or "": len(view.metrics(name)) for name in view.metrics.names()}


# -- rm --------------------------------------------------------------------------------


def test_rm_deletes_a_run_and_its_empty_folders(dash_root):
    make_run(dash_root, "alice/proj/a", steps=10)
    make_run(dash_root, "alice/other/b", steps=10)
    assert cli("rm", "alice/other/b", dash_root=dash_root).stdout == "removed alice/other/b\n"
    assert [r["prefix"] for r in ml_dash.list_experiments(dash_root)] == ["alice/proj/a"]
    assert sorted(os.listdir(os.path.join(dash_root, "alice"))) == ["proj"]
    assert sorted(os.listdir(dash_root)) == ["alice"]  # nothing left behind
    done = cli("rm", "alice/other/b", dash_root=dash_root, check=False)
    assert done.returncode == 1 and "no run 'alice/other/b'" in done.stderr


def test_rm_and_mv_refuse_a_live_run(dash_root, live_writer):
    writer = live_writer("alice/proj/live")
    for args in (["rm", "alice/proj/live"], ["mv", "alice/proj/live", "alice/proj/moved"]):
        done = cli(*args, dash_root=dash_root, check=False)
        assert done.returncode == 1, done.stdout
        assert f"pid={writer.pid}" in done.stderr and "wait for the run to end" in done.stderr
    assert not os.path.exists(os.path.join(dash_root, "alice/proj/moved"))
    writer.stdin.close()
    assert writer.wait(timeout=60) == 0
    assert points_of(dash_root, "alice/proj/live") == {"train": 1}  # the writer lost nothing


def test_rm_and_mv_never_follow_a_link(dash_root, tmp_path):
    outside = str(tmp_path / "outside")
    make_run(outside, "bob/proj/run", steps=5)
    os.makedirs(os.path.join(dash_root, "alice"))
    os.symlink(os.path.join(outside, "bob", "proj"), os.path.join(dash_root, "alice", "proj"))
    make_run(dash_root, "carol/proj/run", steps=5)
    os.symlink(os.path.join(dash_root, "carol", "proj", "run"),
               os.path.join(dash_root, "carol", "proj", "alias"))
    for args in (["rm", "alice/proj/run"], ["rm", "carol/proj/alias"],
                 ["mv", "carol/proj/alias", "carol/proj/x"], ["mv", "carol/proj/run", "alice/proj/x"]):
        done = cli(*args, dash_root=dash_root, check=False)
        assert done.returncode == 1 and "Traceback" not in done.stderr, args
    assert points_of(outside, "bob/proj/run")[""] == 5
    assert points_of(dash_root, "carol/proj/run")[""] == 5
    assert not os.path.exists(os.path.join(outside, "bob", "proj", "x"))


def test_a_run_too_damaged_to_open_can_still_be_moved_and_removed(dash_root):
    make_run(dash_root, "alice/proj/a", steps=5)
    os.truncate(os.path.join(dash_root, "alice", "proj", "a", "data.mdb"), 100)
    [run] = ml_dash.list_experiments(dash_root)
    assert run["status"] == "UNREADABLE"
    cli("mv", "alice/proj/a", "alice/broken/a", dash_root=dash_root)
    assert [r["prefix"] for r in ml_dash.list_experiments(dash_root)] == ["alice/broken/a"]
    cli("rm", "alice/broken/a", dash_root=dash_root)
    assert ml_dash.list_experiments(dash_root) == [] and os.listdir(dash_root) == []


# -- mv --------------------------------------------------------------------------------


def test_mv_renames_a_run_with_everything_in_it(dash_root):
    with Experiment(prefix="alice/proj/a", dash_root=dash_root).run as exp:
        exp.params.set(lr=0.1)
        exp.metrics("train").log(loss=0.5).flush()
        exp.files("models").save_text("weights", to="m.txt")
    done = cli("mv", "alice/proj/a", "bob/new/folder/b", dash_root=dash_root)
    assert done.stdout == "moved alice/proj/a to bob/new/folder/b\n"
    assert [r["prefix"] for r in ml_dash.list_experiments(dash_root)] == ["bob/new/folder/b"]
    assert not os.path.exists(os.path.join(dash_root, "alice"))
    with ml_dash.load("bob/new/folder/b", dash_root=dash_root) as view:
        assert view.params.get() == {"lr": 0.1}
        assert view.files("models/m.txt").read_text() == "weights"
        assert list(view.metrics("train").column("loss")) == [0.5]
    assert ml_dash.check("bob/new/folder/b", dash_root=dash_root)
    with Experiment(prefix="bob/new/folder/b", dash_root=dash_root).run as exp:  # it continues
        exp.metrics("train").log(loss=0.25)
    assert points_of(dash_root, "bob/new/folder/b")["train"] == 2


def test_mv_refuses_an_existing_target_and_a_place_inside_a_run(dash_root):
    make_run(dash_root, "alice/proj/a", steps=5)
    make_run(dash_root, "alice/proj/b", steps=7)
    os.makedirs(os.path.join(dash_root, "alice", "proj", "folder"))
    cases = {"alice/proj/b": "the run", "alice/proj/folder": "the folder",
             "alice/proj/b/inner": "inside the run 'alice/proj/b'",
             "alice/proj/a/inner": "inside the run 'alice/proj/a'",
             "alice/proj": "exists", "../escape/x": "invalid experiment prefix"}
    for target, said in cases.items():
        done = cli("mv", "alice/proj/a", target, dash_root=dash_root, check=False)
        assert done.returncode == 1 and said in done.stderr, (target, done.stderr)
    assert points_of(dash_root, "alice/proj/a")[""] == 5
    assert points_of(dash_root, "alice/proj/b")[""] == 7
    assert os.listdir(os.path.join(dash_root, "alice", "proj", "folder")) == []


@pytest.mark.parametrize("command", ["mv", "rm"])
def test_a_killed_mv_or_rm_leaves_the_run_whole_or_gone(dash_root, command):
    with Experiment(prefix="alice/proj/a", dash_root=dash_root).run as exp:
        for step in range(2000):
            exp.metrics("train").log(loss=1.0 / (step + 1), step=step)
        exp.files("models").save_blob(os.urandom(8 << 20), to="big.bin")  # a copy would take a while
    rng = random.Random(7)
    source, target = "alice/proj/a", "alice/proj/b"
    outcomes = set()
    for _ in range(8):
        args = ["mv", source, target] if command == "mv" else ["rm", source]
        process = subprocess.Popen([sys.executable, "-m", "ml_dash", *args, "--dash-root", dash_root],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.6))  # mostly while it starts; sometimes in the middle
        process.send_signal(signal.SIGKILL)
        process.wait()
        runs = [r["prefix"] for r in ml_dash.list_experiments(dash_root)]
        assert len(runs) <= 1 and all(r["status"] == "COMPLETED" for r in ml_dash.list_experiments(dash_root))
        if not runs:
            assert command == "rm"
            outcomes.add("gone")
            break
        [where] = runs
        outcomes.add("moved" if where != source else "kept")
        assert points_of(dash_root, where) == {"train": 2000}
        assert ml_dash.check(where, dash_root=dash_root)
        with ml_dash.load(where, dash_root=dash_root) as view:
            assert view.files("models/big.bin").exists()
        if where != source:
            source, target = target, source


# -- check and compact over globs ------------------------------------------------------


def test_check_and_compact_take_a_glob(dash_root, live_writer):
    make_run(dash_root, "alice/proj/a", steps=5)
    make_run(dash_root, "alice/proj/b", steps=5)
    out = cli("check", "alice/**", dash_root=dash_root).stdout
    assert [line.split(":")[0] for line in out.splitlines()] == ["<CheckReport alice/proj/a",
                                                                  "<CheckReport alice/proj/b"]
    live_writer("alice/proj/live")
    done = cli("compact", "alice/*/*", dash_root=dash_root, check=False)
    assert done.returncode == 1  # one of them is live: refused, the others compacted
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["compacted alice/proj/a",
                                                                         "compacted alice/proj/b"]
    assert "alice/proj/live" in done.stderr and "wait for the run to end" in done.stderr
    assert "load()" not in done.stderr
    done = cli("check", "bob/**", dash_root=dash_root, check=False)
    assert done.returncode == 1 and "no runs matching 'bob/**'" in done.stderr


def test_a_run_named_with_glob_characters_is_that_run_not_a_pattern(dash_root):
    make_run(dash_root, "g/[x]/r", steps=5)
    make_run(dash_root, "g/x/r", steps=5)
    out = cli("check", "g/[x]/r", dash_root=dash_root).stdout
    assert [line.split(":")[0] for line in out.splitlines()] == ["<CheckReport g/[x]/r"]
    out = cli("compact", "g/[x]/r", dash_root=dash_root).stdout
    assert [line.split(":")[0] for line in out.splitlines()] == ["compacted g/[x]/r"]
    out = cli("check", "g/[a-z]/r", dash_root=dash_root).stdout  # no such run: a pattern
    assert [line.split(":")[0] for line in out.splitlines()] == ["<CheckReport g/x/r"]


def test_compact_of_a_live_run_says_to_wait_for_its_end(dash_root, live_writer):
    live_writer("alice/proj/live")
    with pytest.raises(ml_dash.WriterLockedError, match="wait for the run to end.*then compact it"):
        ml_dash.compact("alice/proj/live", dash_root=dash_root)
    done = cli("compact", "alice/proj/live", dash_root=dash_root, check=False)
    assert done.returncode == 1 and "then compact it" in done.stderr and "load()" not in done.stderr


# -- --version, ls -----------------------------------------------------------------------


def test_version():
    out = cli("--version").stdout
    assert out.startswith(f"ml-dash {ml_dash.__version__} (ml_dash in ")
    assert os.path.dirname(ml_dash.__file__) in out


def test_ls_prints_times_in_the_local_zone_with_its_offset(dash_root):
    make_run(dash_root, "alice/proj/a", steps=3)
    [run] = ml_dash.list_experiments(dash_root)
    env = dict(os.environ, TZ="Asia/Kolkata")  # +05:30, no daylight saving
    out = subprocess.run([sys.executable, "-m", "ml_dash", "ls", "--dash-root", dash_root], env=env,
                         capture_output=True, text=True, check=True).stdout
    from datetime import datetime, timedelta
    started = datetime.fromisoformat(run["startedAt"].replace("Z", "+00:00"))
    local = (started + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%d %H:%M:%S") + "+05:30"
    assert local in out.splitlines()[1]


# -- lock_timeout ---------------------------------------------------------------------------


def test_lock_timeout_none_waits_until_the_other_writer_ends(dash_root, live_writer):
    writer = live_writer("alice/proj/live")
    exp = Experiment(prefix="alice/proj/live", dash_root=dash_root, lock_timeout=None)
    ended = []

    def end_writer_later():
        time.sleep(1.0)
        ended.append(time.monotonic())
        writer.stdin.close()

    import threading
    threading.Thread(target=end_writer_later, daemon=True).start()
    exp.run.start()  # waits for the lock, however long that takes
    assert ended and time.monotonic() >= ended[0]
    exp.metrics("train").log(loss=0.25)
    exp.run.complete()
    assert points_of(dash_root, "alice/proj/live") == {"train": 2}


@pytest.mark.parametrize("value", ["5", -1, float("nan"), [1], True])
def test_a_bad_lock_timeout_is_refused_naming_it(dash_root, value):
    with pytest.raises(ml_dash.ConfigurationError, match=f"lock_timeout .* got {type(value).__name__}"):
        Experiment(prefix="alice/proj/a", dash_root=dash_root, lock_timeout=value)


# -- show and read -f when keys change --------------------------------------------------------


def test_show_prints_each_end_with_its_own_keys(dash_root):
    with Experiment(prefix="alice/proj/a", dash_root=dash_root).run as exp:
        exp.metrics("train").log(epoch=0, loss=1.0)
        exp.metrics("train").buffer(loss=0.5)
        exp.metrics.buffer.log_summary()
    out = cli("show", "alice/proj/a", dash_root=dash_root).stdout
    train = next(line for line in out.splitlines() if line.startswith("train"))
    assert train.split()[:2] == ["train", "2"]
    assert "epoch=0, loss=1  loss.mean=0.5" in train and "loss.mean=," not in train


def test_read_follow_shows_keys_that_arrive_later(dash_root):
    exp = Experiment(prefix="alice/proj/live", dash_root=dash_root)
    exp.run.start()
    exp.metrics("train").log(step=0).flush()
    follower = subprocess.Popen(
        [sys.executable, "-m", "ml_dash", "read", "alice/proj/live", "train", "-f",
         "--interval", "0.05", "--dash-root", dash_root],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stdout.readline().split() == ["INDEX", "CREATED", "step", "_ts"]
        assert follower.stdout.readline().split()[0] == "0"
        exp.metrics("train").log(step=1, val_loss=0.75).flush()
        exp.run.complete()
        rest = follower.communicate(timeout=60)[0].splitlines()
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0
    assert rest[0].split() == ["INDEX", "CREATED", "step", "_ts", "val_loss"]
    assert rest[1].split()[0] == "1" and rest[1].split()[-1] == "0.75"


def test_read_follow_waits_for_a_run_that_does_not_exist_yet(dash_root):
    follower = subprocess.Popen(
        [sys.executable, "-m", "ml_dash", "read", "alice/proj/later", "train", "-f", "--json",
         "--interval", "0.05", "--dash-root", dash_root],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "waiting for the run 'alice/proj/later' to start" in follower.stderr.readline()
        time.sleep(0.3)
        assert follower.poll() is None  # still waiting
        with Experiment(prefix="alice/proj/later", dash_root=dash_root).run as exp:
            for i in range(5):
                exp.metrics("train").log(i=i).flush()
        out, err = follower.communicate(timeout=60)
        out = out.splitlines()
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert [json.loads(line)["data"]["i"] for line in out] == list(range(5))
