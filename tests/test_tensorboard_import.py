"""TensorBoard import: event files written by real writers, read back from the store value by value.

TF1-style scalars (``simple_value``) and hparams come from torch's ``SummaryWriter``, TF2-style
scalar tensors from ``tensorboard.summary.Writer``; files are cut and damaged byte by byte to
check what a training still writing, or a crash, leaves behind.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorboard")
pytest.importorskip("google_crc32c")

from ml_dash import load  # noqa: E402
from ml_dash.integrations.tensorboard import RECORD_STREAM, import_tensorboard  # noqa: E402
from ml_dash.integrations.tfrecord import RecordReader  # noqa: E402


def _torch_writer(directory):
    torch_tb = pytest.importorskip("torch.utils.tensorboard")
    return torch_tb.SummaryWriter(str(directory))


def _write_scalars(writer, tags, steps, seed=0, first_step=0):
    """Log ``tags`` at ``steps`` steps; returns ``{tag: [(step, value, wall time)]}``."""
    rng = np.random.default_rng(seed)
    written = {tag: [] for tag in tags}
    for step in range(first_step, first_step + steps):
        wall = 1.7e9 + step + rng.random()  # one time per step, as a training loop logs
        for tag in tags:
            value = float(rng.normal())
            writer.add_scalar(tag, value, step, walltime=wall)
            written[tag].append((step, value, wall))
    writer.flush()
    return written


def _stored(view, stream, key):
    """``[(step, value, _ts)]`` of ``key`` in ``stream`` of a view, in stored order."""
    handle = view.metrics(stream) if stream else view.metrics
    columns = handle.columns("step", key, "_ts")
    present = ~np.isnan(columns[key])
    return list(zip(columns["step"][present].astype(int).tolist(), columns[key][present].tolist(),
                    columns["_ts"][present].tolist()))


def _assert_same(stored, written):
    """Steps and wall times exact; values at float32, the precision of ``simple_value``."""
    assert [s for s, _, _ in stored] == [s for s, _, _ in written]
    assert np.array_equal(np.float32([v for _, v, _ in stored]), np.float32([v for _, v, _ in written]))
    assert [t for _, _, t in stored] == pytest.approx([t for _, _, t in written], abs=1e-6, rel=0)


def _event_file(directory):
    (name,) = [n for n in os.listdir(directory) if "tfevents" in n]
    return os.path.join(directory, name)


def test_nested_runs_value_by_value(tmp_path):
    logdir, root = tmp_path / "logs", tmp_path / "dash"
    written = {}
    for run, tags in [("exp1/train", ["train/loss", "train/acc", "lr"]),
                      ("exp1/eval", ["eval/loss"]), ("exp2", ["train/loss", "grad/layer1/norm"])]:
        with _torch_writer(logdir / run) as writer:
            written[run] = _write_scalars(writer, tags, steps=50, seed=len(written))

    summary = import_tensorboard(str(logdir), prefix="alice/tb", dash_root=str(root))

    assert summary.problems == [] and summary.incomplete == []
    assert summary.runs == {"alice/tb/exp1/eval": 50, "alice/tb/exp1/train": 150, "alice/tb/exp2": 100}
    assert summary.scalars == 300
    places = {"train/loss": ("train", "loss"), "train/acc": ("train", "acc"), "lr": (None, "lr"),
              "eval/loss": ("eval", "loss"), "grad/layer1/norm": ("grad", "layer1/norm")}
    for run, tags in written.items():
        view = load(f"alice/tb/{run}", dash_root=str(root))
        for tag, points in tags.items():
            _assert_same(_stored(view, *places[tag]), points)
    # one point per (stream, step): loss and acc of a step share a row
    train = load("alice/tb/exp1/train", dash_root=str(root)).metrics("train")
    assert len(train) == 50 and sorted(train.keys()) == ["_ts", "acc", "loss", "step"]


def test_tensor_scalars_of_the_tensorboard_writer(tmp_path):
    from tensorboard.summary import Writer
    logdir = tmp_path / "logs"
    writer = Writer(str(logdir))
    written = []
    for step in range(0, 300, 3):
        value = np.float32(np.sin(step))
        writer.add_scalar("eval/auc", value, step, wall_time=1.6e9 + step / 7)
        writer.add_scalar("eval/count", np.int64(step * 10), step, wall_time=1.6e9 + step / 7)
        written.append((step, float(value), 1.6e9 + step / 7))
    writer.close()

    summary = import_tensorboard(str(logdir), prefix="bob/tf2", dash_root=str(tmp_path / "dash"))

    assert summary.scalars == 200 and summary.skipped == {}
    view = load("bob/tf2", dash_root=str(tmp_path / "dash"))
    _assert_same(_stored(view, "eval", "auc"), written)
    assert [v for _, v, _ in _stored(view, "eval", "count")] == [s * 10.0 for s, _, _ in written]


def test_hparams_become_params_and_other_plugins_are_counted(tmp_path):
    logdir, root = tmp_path / "logs", str(tmp_path / "dash")
    with _torch_writer(logdir / "run") as writer:
        writer.add_scalar("train/loss", 0.25, 0)
        writer.add_histogram("weights", np.arange(100), 0)
        writer.add_text("notes", "first try", 0)
        writer.add_hparams({"lr": 0.003, "batch_size": 64, "optimizer": "adamw"},
                           {"hparam/accuracy": 0.91}, run_name="trial")

    summary = import_tensorboard(str(logdir), prefix="carol/sweep", dash_root=root)

    # add_hparams writes its session into a folder below the run: TensorBoard's run
    # "run/trial"; the run's own events sit beside it as run/events.
    assert summary.runs == {"carol/sweep/run/events": 1, "carol/sweep/run/trial": 1}
    assert summary.hparams == 3
    assert summary.skipped["histograms"] == 1 and summary.skipped["text"] == 1
    trial = load("carol/sweep/run/trial", dash_root=root)
    assert trial.params.get() == {"lr": 0.003, "batch_size": 64, "optimizer": "adamw"}
    assert _stored(trial, "hparam", "accuracy")[0][1] == pytest.approx(0.91, rel=1e-7)
    assert load("carol/sweep/run/events", dash_root=root).metrics("train").column("loss").tolist() == [0.25]


def test_tags_that_would_clash_keep_their_whole_name(tmp_path):
    logdir = tmp_path / "logs"
    with _torch_writer(logdir) as writer:
        for number, tag in enumerate(["step", "train/step", "train/", "/loss", "train/loss"]):
            writer.add_scalar(tag, 1.5, 7, walltime=100.0 + number)
        writer.add_scalar("train/loss", 2.5, 7, walltime=200.0)  # the same tag again at that step: a new point

    import_tensorboard(str(logdir), prefix="dan/tags", dash_root=str(tmp_path / "dash"))

    view = load("dan/tags", dash_root=str(tmp_path / "dash"))
    # a point's _ts is the wall time of its first value
    assert [row["data"] for row in view.metrics.read()["data"]] == [
        {"step": 7, "tag:step": 1.5, "loss": 1.5, "_ts": 100.0}]
    assert [row["data"] for row in view.metrics("train").read()["data"]] == [
        {"step": 7, "tag:train/step": 1.5, "tag:train/": 1.5, "loss": 1.5, "_ts": 101.0},
        {"step": 7, "loss": 2.5, "_ts": 200.0}]


def test_a_second_import_adds_nothing(tmp_path):
    logdir, root = tmp_path / "logs", str(tmp_path / "dash")
    for run in ("a", "b"):
        with _torch_writer(logdir / run) as writer:
            _write_scalars(writer, ["train/loss", "eval/loss"], steps=20)
    first = import_tensorboard(str(logdir), prefix="erin/p", dash_root=root)
    before = {run: (len(load(f"erin/p/{run}", dash_root=root).metrics("train")),
                    len(load(f"erin/p/{run}", dash_root=root).metrics(RECORD_STREAM))) for run in "ab"}

    second = import_tensorboard(str(logdir), prefix="erin/p", dash_root=root)

    assert first.scalars == 80 and second.scalars == 0
    assert second.runs == {"erin/p/a": 0, "erin/p/b": 0}
    assert before == {run: (len(load(f"erin/p/{run}", dash_root=root).metrics("train")),
                            len(load(f"erin/p/{run}", dash_root=root).metrics(RECORD_STREAM))) for run in "ab"}


def test_a_file_that_grew_adds_only_its_new_events(tmp_path):
    logdir, root = tmp_path / "logs", str(tmp_path / "dash")
    with _torch_writer(logdir) as writer:
        first = _write_scalars(writer, ["train/loss"], steps=30, seed=1)
        assert import_tensorboard(str(logdir), prefix="fay/live", dash_root=root).scalars == 30
        later = _write_scalars(writer, ["train/loss"], steps=45, seed=2, first_step=30)

        summary = import_tensorboard(str(logdir), prefix="fay/live", dash_root=root)

    assert summary.scalars == 45
    _assert_same(_stored(load("fay/live", dash_root=root), "train", "loss"),
                 first["train/loss"] + later["train/loss"])


def _whole_events_before(path, size):
    """What tensorboard's own loader reads of the first ``size`` bytes of ``path``."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    cut = path + ".cut"
    with open(path, "rb") as full, open(cut, "wb") as out:
        out.write(full.read(size))
    events = [e for e in EventFileLoader(cut).Load() if e.summary.value]
    os.remove(cut)
    return len(events)


def test_a_truncated_file_imports_what_is_whole_then_the_rest(tmp_path):
    source, logdir, root = tmp_path / "source", tmp_path / "logs", str(tmp_path / "dash")
    with _torch_writer(source) as writer:
        written = _write_scalars(writer, ["train/loss"], steps=40, seed=3)
    data = open(_event_file(source), "rb").read()
    cut = len(data) * 2 // 3 + 5  # inside a record
    whole = _whole_events_before(_event_file(source), cut)
    os.makedirs(logdir)
    target = logdir / os.path.basename(_event_file(source))
    target.write_bytes(data[:cut])

    summary = import_tensorboard(str(logdir), prefix="gil/cut", dash_root=root)

    assert summary.problems == [] and summary.scalars == whole and 0 < whole < 40
    assert len(summary.incomplete) == 1 and str(target) in summary.incomplete[0]
    stored = _stored(load("gil/cut", dash_root=root), "train", "loss")
    _assert_same(stored, written["train/loss"][:whole])

    with open(target, "ab") as f:  # the writer wrote the rest
        f.write(data[cut:])
    again = import_tensorboard(str(logdir), prefix="gil/cut", dash_root=root)
    assert again.scalars == 40 - whole and again.incomplete == []
    _assert_same(_stored(load("gil/cut", dash_root=root), "train", "loss"), written["train/loss"])


def test_a_damaged_record_stops_its_file_and_is_reported(tmp_path):
    logdir, root = tmp_path / "logs", str(tmp_path / "dash")
    with _torch_writer(logdir / "bad") as writer:
        written = _write_scalars(writer, ["train/loss"], steps=40, seed=4)
    with _torch_writer(logdir / "good") as writer:
        _write_scalars(writer, ["train/loss"], steps=10, seed=5)
    path = _event_file(logdir / "bad")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x55
    open(path, "wb").write(data)

    summary = import_tensorboard(str(logdir), prefix="hal/dmg", dash_root=root)

    assert len(summary.problems) == 1 and path in summary.problems[0] and "damaged" in summary.problems[0]
    assert summary.runs["hal/dmg/good"] == 10
    stored = _stored(load("hal/dmg/bad", dash_root=root), "train", "loss")
    assert 0 < len(stored) < 40
    _assert_same(stored, written["train/loss"][:len(stored)])
    # importing again reports the damage again and adds nothing
    again = import_tensorboard(str(logdir), prefix="hal/dmg", dash_root=root)
    assert again.scalars == 0 and len(again.problems) == 1


def test_a_run_the_store_refuses_is_reported_and_the_others_imported(tmp_path):
    logdir, root = tmp_path / "logs", str(tmp_path / "dash")
    # exp's own events would be the run ian/x/exp/events, which is also exp/events' prefix
    for run in ("ok", "back\\slash", "exp", "exp/events"):
        with _torch_writer(logdir / run) as writer:
            _write_scalars(writer, ["loss"], steps=3)
    summary = import_tensorboard(str(logdir), prefix="ian/x", dash_root=root)
    assert summary.runs == {"ian/x/ok": 3, "ian/x/exp/events": 3}
    assert len(summary.problems) == 2
    assert "backslash" in summary.problems[0]
    assert summary.problems[1].startswith(str(logdir / "exp" / "events"))
    assert "'ian/x/exp/events' is already that of" in summary.problems[1]


def test_a_file_shorter_than_what_was_imported_is_reported_not_read_again(tmp_path):
    logdir, root = tmp_path / "logs", str(tmp_path / "dash")
    with _torch_writer(logdir) as writer:
        _write_scalars(writer, ["train/loss"], steps=10)
    import_tensorboard(str(logdir), prefix="lea/short", dash_root=root)
    path = _event_file(logdir)
    os.truncate(path, os.path.getsize(path) // 2)
    summary = import_tensorboard(str(logdir), prefix="lea/short", dash_root=root)
    assert summary.scalars == 0 and len(summary.problems) == 1 and "shorter" in summary.problems[0]
    assert len(load("lea/short", dash_root=root).metrics("train")) == 10


def test_bench_smoke(tmp_path):
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "tb_import.py")
    done = subprocess.run([sys.executable, bench, "--quick", "--no-loader", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "events/s" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| ml_dash import", "| read only (our framing + protobuf)",
                                                    "| EventAccumulator"]


def test_cli_imports_then_says_up_to_date(tmp_path):
    logdir, root = tmp_path / "logs", str(tmp_path / "dash")
    with _torch_writer(logdir / "exp") as writer:
        _write_scalars(writer, ["train/loss", "train/acc"], steps=25)
        writer.add_histogram("w", np.arange(5), 0)
    command = [sys.executable, "-m", "ml_dash", "import", "tensorboard", str(logdir), "--prefix", "jo/cli",
               "--dash-root", root]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "jo/cli/exp: 50 scalars",
        "50 scalars and 0 hparams imported into 1 run; not imported: 1 histograms"]
    assert second.returncode == 0 and second.stdout.splitlines()[0] == "jo/cli/exp: up to date"
    missing = subprocess.run([*command[:5], str(tmp_path / "nowhere")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    a_file = subprocess.run([*command[:5], _event_file(logdir / "exp")], capture_output=True, text=True,
                            timeout=60)
    assert a_file.returncode == 1 and "is a file: give the folder that holds it" in a_file.stderr


def test_record_reader_stops_at_every_cut(tmp_path):
    """Cut a file at every byte: the reader gives exactly the records wholly before the cut."""
    from tensorboard.summary.writer.record_writer import RecordWriter
    records = [os.urandom(n) for n in (0, 1, 7, 100, 3)]
    path = tmp_path / "records"
    with open(path, "wb") as f:
        writer = RecordWriter(f)
        ends = []
        for record in records:
            writer.write(record)
            f.flush()
            ends.append(f.tell())
    data = path.read_bytes()
    cut_path = tmp_path / "cut"
    for cut in range(len(data) + 1):
        cut_path.write_bytes(data[:cut])
        reader = RecordReader(str(cut_path))
        got = list(reader)
        whole = sum(1 for end in ends if end <= cut)
        assert [r for r, _ in got] == records[:whole]
        assert reader.end == (ends[whole - 1] if whole else 0) and reader.problem is None
        assert reader.incomplete == cut - reader.end


def test_more_streams_than_a_run_holds_stores_no_point_without_its_record(tmp_path):
    """The chunk that fails stores nothing, so importing again cannot store a point twice."""
    logdir, root = tmp_path / "logs", str(tmp_path / "dash")
    with _torch_writer(logdir / "wide") as writer:
        for number in range(1100):
            writer.add_scalar(f"layer{number}/norm", 1.0, 0)
    with _torch_writer(logdir / "narrow") as writer:
        writer.add_scalar("train/loss", 0.5, 0)
    for _ in range(2):
        summary = import_tensorboard(str(logdir), prefix="kim/wide", dash_root=root)
        assert summary.runs == {"kim/wide/narrow": summary.runs["kim/wide/narrow"], "kim/wide/wide": 0}
        assert len(summary.problems) == 1 and "kim/wide/wide" in summary.problems[0]
        assert "at most 1000 named streams" in summary.problems[0]
        assert load("kim/wide/wide", dash_root=root).metrics.list_all() == []
    assert len(load("kim/wide/narrow", dash_root=root).metrics("train")) == 1


def test_chunks_cover_the_file_once(tmp_path, monkeypatch):
    """Small chunks: a chunk ends on its record count or on its point count (events of
    several values), and the record stream's byte ranges tile the file."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    import ml_dash.integrations.tensorboard as tensorboard
    monkeypatch.setattr(tensorboard, "CHUNK", 7)
    logdir, root = tmp_path / "logs", str(tmp_path / "dash")
    writer = EventFileWriter(str(logdir))
    for step in range(40):
        values = [Summary.Value(tag=tag, simple_value=step + number / 4)
                  for number, tag in enumerate(["a/x", "b/x", "c/x"] if step % 2 else ["a/x"])]
        writer.add_event(Event(wall_time=1e9 + step, step=step, summary=Summary(value=values)))
    writer.close()

    assert import_tensorboard(str(logdir), prefix="max/chunks", dash_root=root).scalars == 80
    assert import_tensorboard(str(logdir), prefix="max/chunks", dash_root=root).scalars == 0

    view = load("max/chunks", dash_root=root)
    assert view.metrics("a").column("x").tolist() == [float(step) for step in range(40)]
    assert view.metrics("c").column("x").tolist() == [step + 0.5 for step in range(1, 40, 2)]
    ranges = [(row["data"]["start"], row["data"]["end"]) for row in view.metrics(RECORD_STREAM).read()["data"]]
    assert len(ranges) > 40 // 7 and ranges[0][0] == 0 and ranges[-1][1] == os.path.getsize(_event_file(logdir))
    assert all(end == next_start for (_, end), (next_start, _) in zip(ranges, ranges[1:]))


def test_arguments_of_the_wrong_type_are_named(tmp_path):
    with pytest.raises(TypeError, match="logdir must be a folder path, got NoneType"):
        import_tensorboard(None, dash_root=str(tmp_path / "dash"))
    with pytest.raises(TypeError, match="prefix must be a str, got int"):
        import_tensorboard(str(tmp_path), 5, dash_root=str(tmp_path / "dash"))
    assert import_tensorboard(tmp_path, "alice/tb", dash_root=str(tmp_path / "dash")).scalars == 0  # a Path is fine
