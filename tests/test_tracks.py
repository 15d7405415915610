"""Tracks: appending, merging by _ts, reading in every format, slices, views, limits."""

import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ml_dash
from ml_dash import ConfigurationError, EntryNotFoundError, Experiment, ExperimentError, load


def test_append_read_and_the_same_object(exp):
    track = exp.tracks("robot/pose")
    assert exp.tracks("robot/pose") is track
    assert track.append(x=1.0, y=2, _ts=10.0) is track
    track.append(x=1.5, label="b", _ts=11.0)
    assert track.read() == {"entries": [], "count": 0}  # nothing flushed yet
    exp.tracks.flush()
    assert track.read() == {"count": 2, "entries": [
        {"timestamp": 10.0, "x": 1.0, "y": 2}, {"timestamp": 11.0, "x": 1.5, "label": "b"}]}
    assert len(track) == 2
    assert track.list_entries() == track.read()["entries"]


def test_merging_staged_entries_and_the_committed_one(exp):
    track = exp.tracks("camera")
    track.append(frame=0, _ts=1.0)
    track.append(path="f0.png", _ts=1.0)
    track.append(camera={"pos": [0, 0, 1]}, _ts=-1)
    exp.flush()
    track.append(exposure=0.5, frame=7, _ts=1.0)  # merges into the committed entry
    exp.flush()
    entries = track.read()["entries"]
    assert entries == [{"timestamp": 1.0, "frame": 7, "path": "f0.png", "camera.pos": [0, 0, 1],
                        "exposure": 0.5}]
    assert list(track.column("exposure")) == [0.5]
    assert list(track.column("frame")) == [7.0]


def test_older_entries_sort_among_staged_and_are_refused_below_committed(exp):
    track = exp.tracks("t")
    for ts in (5.0, 3.0, 4.0, 3.0):
        track.append(v=ts, _ts=ts)
    exp.flush()
    assert [e["timestamp"] for e in track.list_entries()] == [3.0, 4.0, 5.0]
    with pytest.raises(ValueError, match=r"track 't': _ts=4.5 is older .* _ts=5.0"):
        track.append(v=0, _ts=4.5)
    track.append(v=6, _ts=6.0)
    exp.flush()
    assert list(track.timestamps()) == [3.0, 4.0, 5.0, 6.0]


def test_automatic_times_strictly_increase_and_minus_one_is_shared_with_metrics(exp):
    for i in range(200):
        exp.tracks("fast").append(i=i)
    exp.tracks("pose").append(x=1.0, _ts=100.0)
    exp.metrics("train").log(loss=0.5, _ts=-1)
    exp.metrics("train").log(loss=0.4)
    exp.tracks("pose").append(y=2.0, _ts=-1)
    exp.flush()
    ts = exp.tracks("fast").timestamps()
    assert len(ts) == 200 and np.all(np.diff(ts) > 0)
    assert exp.metrics("train").read()["data"][0]["data"]["_ts"] == 100.0
    last_metric = exp.metrics("train").read()["data"][1]["data"]["_ts"]
    assert exp.tracks("pose").timestamps()[-1] == last_metric


def test_minus_one_in_a_fresh_thread_is_an_error(exp):
    errors = []

    def append():
        try:
            exp.tracks("t").append(v=1, _ts=-1)
        except ConfigurationError as exc:
            errors.append(exc)
    thread = threading.Thread(target=append)
    thread.start()
    thread.join()
    assert errors


def test_numpy_values_and_nested_fields(exp):
    exp.tracks("state").append(pos=np.array([1.0, 2.0]), n=np.int32(3), f=np.float32(0.5),
                               b=np.bool_(True), cam={"rot": np.eye(2), "k": {"deep": 1}}, _ts=0.0)
    exp.flush()
    entry = exp.tracks("state").read()["entries"][0]
    assert entry == {"timestamp": 0.0, "pos": [1.0, 2.0], "n": 3, "f": 0.5, "b": True,
                     "cam.rot": [[1.0, 0.0], [0.0, 1.0]], "cam.k.deep": 1}
    assert type(entry["n"]) is int and type(entry["b"]) is bool
    assert set(exp.tracks("state").keys()) == {"_ts", "n", "f", "b", "cam.k.deep"}


@pytest.mark.parametrize("fields, key", [
    ({"x": object()}, "x"), ({"a": {"b": {1, 2}}}, "a.b"), ({"v": [1, b"raw"]}, "v")])
def test_bad_values_raise_at_the_call_and_stage_nothing(exp, fields, key):
    exp.tracks("t").append(ok=1, _ts=1.0)
    with pytest.raises(TypeError) as info:
        exp.tracks("t").append(**fields, _ts=2.0)
    assert "track 't'" in str(info.value) and repr(key) in str(info.value)
    exp.flush()
    assert exp.tracks("t").read()["count"] == 1


def test_bad_times_and_names(exp):
    with pytest.raises(TypeError, match="_ts must be a number"):
        exp.tracks("t").append(v=1, _ts="now")
    with pytest.raises(TypeError, match="give the time once"):
        exp.tracks("t").append(timestamp=3.0, _ts=3.0)
    with pytest.raises(TypeError, match="give the time once"):
        exp.tracks("t").append({"_ts": 3.0}, timestamp=3.0)
    with pytest.raises(TypeError, match="_ts must be a number"):
        exp.tracks("t").append(timestamp="3")
    with pytest.raises(ValueError, match="non-empty"):
        exp.tracks("")
    with pytest.raises(ValueError, match="format must be one of"):
        exp.tracks("t").read(format="csv")
    with pytest.raises(TypeError, match="start_timestamp must be a number"):
        exp.tracks("t").slice("0")
    with pytest.raises(TypeError, match="a time must be a number"):
        exp.tracks("t").slice().findByTime("1")


def test_read_range_columns_and_formats(exp):
    track = exp.tracks("robot/position", metadata={"fps": 60})
    for i in range(10):
        track.append(x=float(i), y=i * 2, tag=f"s{i}", _ts=float(i))
    exp.flush()
    assert [e["x"] for e in track.read(3.0, 5.0)["entries"]] == [3.0, 4.0, 5.0]
    assert track.read(8.5, columns=["y"])["entries"] == [{"timestamp": 9.0, "y": 18}]
    lines = track.read(format="jsonl").decode().split("\n")
    assert json.loads(lines[2]) == {"timestamp": 2.0, "x": 2.0, "y": 4, "tag": "s2"}
    mocap = track.read(start_timestamp=1.0, end_timestamp=4.0, format="mocap")
    assert mocap["metadata"]["fps"] == 60 and mocap["metadata"]["frameCount"] == 4
    assert mocap["metadata"]["duration"] == 3.0 and mocap["channels"] == ["tag", "x", "y"]
    assert mocap["frames"][0] == {"time": 1.0, "x": 1.0, "y": 2, "tag": "s1"}
    import pyarrow.parquet as pq
    table = pq.read_table(io.BytesIO(track.read(format="parquet")))
    assert table.column("x").to_pylist() == [float(i) for i in range(10)]
    empty = exp.tracks("never")
    assert empty.read() == {"entries": [], "count": 0} and empty.read(format="jsonl") == b""
    assert pq.read_table(io.BytesIO(empty.read(format="parquet"))).num_rows == 0
    assert empty.read(format="mocap")["frames"] == []


def test_slice_iteration_len_and_find_by_time(exp):
    track = exp.tracks("sensor")
    for t in (1.0, 3.0, 5.0, 7.0, 9.0):
        track.append(v=int(t * 10), _ts=t)
    exp.flush()
    window = track.slice(2.0, 7.0)
    assert len(window) == 3 and [e["v"] for e in window] == [30, 50, 70]
    assert [e["v"] for e in window] == [30, 50, 70]  # again
    assert window.findByTime(6.9)["timestamp"] == 5.0
    assert window.findByTime(100)["timestamp"] == 7.0
    assert [e["v"] for e in window.findByTime([3.0, 4.5, np.float64(7.0)])] == [30, 30, 70]
    assert window.findByTime([]) == []
    with pytest.raises(EntryNotFoundError, match="No entry found with timestamp <= 2.5"):
        window.findByTime(2.5)
    with pytest.raises(KeyError):
        track.slice().findByTime(0.5)
    with pytest.raises(KeyError, match="No entries in track slice"):
        track.slice(20.0).findByTime(30.0)
    assert repr(window) == "TrackSlice(topic='sensor', start=2.0, end=7.0)"


def test_a_slice_is_fixed_when_first_used(exp):
    track = exp.tracks("s")
    track.append(v=1, _ts=1.0)
    exp.flush()
    window = track.slice()
    assert len(window) == 1
    track.append(v=2, _ts=2.0)
    exp.flush()
    assert len(window) == 1 and len(track.slice()) == 2


# -- the index math against a brute-force model ---------------------------------------

# -1 is not a time but the sentinel for "the last _ts of this thread"
times = st.lists(st.integers(-50, 50).filter(lambda n: n != -4).map(lambda n: n / 4),
                 min_size=0, max_size=40, unique=True)
queries = st.lists(st.integers(-60, 60).map(lambda n: n / 8), max_size=20)
bound = st.none() | st.integers(-60, 60).map(lambda n: n / 8)


@settings(max_examples=60, deadline=None)
@given(times=times, start=bound, end=bound, asked=queries)
def test_slice_and_find_by_time_match_a_model(tmp_path_factory, times, start, end, asked):
    root = str(tmp_path_factory.mktemp("model"))
    with Experiment(prefix="m/p/x", dash_root=root).run as exp:
        track = exp.tracks("t")
        for ts in times:  # in any order: the writer sorts the staged ones
            track.append(at=ts, _ts=ts)
        exp.flush()
        model = sorted(t for t in times if (start is None or t >= start) and (end is None or t <= end))
        window = track.slice(start, end)
        assert [e["timestamp"] for e in window] == model and len(window) == len(model)
        for query in asked:
            floor = [t for t in model if t <= query]
            if floor:
                assert window.findByTime(query) == {"timestamp": floor[-1], "at": floor[-1]}
            else:
                with pytest.raises(KeyError):
                    window.findByTime(query)


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.lists(st.tuples(st.integers(0, 6), st.sampled_from("abc"),
                                         st.integers(0, 99)), max_size=6), min_size=1, max_size=6))
def test_merging_across_flushes_matches_a_model(tmp_path_factory, steps):
    """Flushes of (ts, key, value) appends; an append older than the committed end is refused."""
    root = str(tmp_path_factory.mktemp("merge"))
    model: dict = {}
    with Experiment(prefix="m/p/y", dash_root=root).run as exp:
        track = exp.tracks("t")
        for step in steps:
            committed_end = max(model, default=None)
            for ts, key, value in step:
                if committed_end is not None and ts < committed_end:
                    with pytest.raises(ValueError):
                        track.append(**{key: value}, _ts=float(ts))
                    continue
                track.append(**{key: value}, _ts=float(ts))
                model.setdefault(float(ts), {})[key] = value
            exp.flush()
            assert track.list_entries() == [{"timestamp": ts, **model[ts]} for ts in sorted(model)]
            for key in "abc":
                if key in track.keys():
                    want = [model[ts].get(key, np.nan) for ts in sorted(model)]
                    np.testing.assert_array_equal(track.column(key), np.array(want, dtype=float))


# -- the rest of the package ------------------------------------------------------------

def test_tracks_and_streams_are_apart(exp):
    exp.tracks("train").append(v=1.0, _ts=1.0)
    exp.metrics("train").log(loss=0.5)
    exp.metrics("other").log(loss=0.5)
    exp.flush()
    assert set(exp.metrics.names()) == {"train", "other"}
    assert [s["name"] for s in exp.metrics.list_all()] == ["other", "train"]
    assert exp.tracks.names() == ["train"]
    assert exp.tracks("train").read()["entries"] == [{"timestamp": 1.0, "v": 1.0}]
    assert len(exp.metrics("train")) == 1


def test_views_read_tracks_and_refuse_appends(dash_root):
    with Experiment(prefix="a/b/c", dash_root=dash_root).run as exp:
        exp.tracks("robot/pose").append(x=1.0, _ts=5.0)
    with load("a/b/c", dash_root=dash_root) as view:
        assert view.tracks.names() == ["robot/pose"]
        assert view.tracks("robot/pose").slice().findByTime(6.0)["x"] == 1.0
        with pytest.raises(ExperimentError, match="read-only"):
            view.tracks("robot/pose").append(x=2.0)
        with pytest.raises(ExperimentError, match="read-only"):
            view.tracks.flush()
    listed = ml_dash.list_experiments(dash_root)
    assert listed[0]["tracks"] == [{"topic": "robot/pose", "count": 1}] and listed[0]["streams"] == []


def test_reopen_continues_and_merges_into_the_last_entry(dash_root):
    with Experiment(prefix="a/b/c", dash_root=dash_root).run as exp:
        exp.tracks("t").append(a=1, _ts=1.0).append(a=2, _ts=2.0)
    with Experiment(prefix="a/b/c", dash_root=dash_root).run as exp:
        with pytest.raises(ValueError, match="older"):
            exp.tracks("t").append(a=0, _ts=1.5)
        exp.tracks("t").append(b=3, _ts=2.0).append(a=4, _ts=3.0)
    view = load("a/b/c", dash_root=dash_root)
    assert view.tracks("t").list_entries() == [
        {"timestamp": 1.0, "a": 1}, {"timestamp": 2.0, "a": 2, "b": 3}, {"timestamp": 3.0, "a": 4}]
    assert ml_dash.check("a/b/c", dash_root=dash_root).ok


def test_check_verifies_track_columns_and_compact_keeps_tracks(dash_root):
    with Experiment(prefix="a/b/c", dash_root=dash_root).run as exp:
        for i in range(100):
            exp.tracks("t").append(v=float(i), _ts=float(i))
            exp.tracks("t").append(w=float(i), _ts=float(i))
            exp.flush()
    report = ml_dash.check("a/b/c", dash_root=dash_root)
    assert report.ok and report.tracks == {"t": 100}
    column = next(p for p in (os.path.join(d, f) for d, _, fs in os.walk(
        os.path.join(dash_root, "a/b/c/columns")) for f in fs))
    with open(column, "r+b") as handle:  # damage every column file's first slot in turn
        handle.write(np.float64(12345.0).tobytes())
    assert not ml_dash.check("a/b/c", dash_root=dash_root).ok
    assert ml_dash.check("a/b/c", dash_root=dash_root, repair=True).ok
    ml_dash.compact("a/b/c", dash_root=dash_root)
    view = load("a/b/c", dash_root=dash_root)
    assert len(view.tracks("t")) == 100
    assert view.tracks("t").slice().findByTime(41.5) == {"timestamp": 41.0, "v": 41.0, "w": 41.0}


def test_tracks_count_against_the_stream_limit(exp, monkeypatch):
    from ml_dash import StreamLimitError
    monkeypatch.setattr("ml_dash.metrics.MAX_STREAMS", 3)
    exp.metrics("a")
    exp.tracks("b")
    exp.tracks("c")
    with pytest.raises(StreamLimitError, match="track 'd'"):
        exp.tracks("d")
    with pytest.raises(StreamLimitError, match="stream 'e'"):
        exp.metrics("e")


def test_buffering_disabled_commits_every_append(dash_root, monkeypatch):
    monkeypatch.setenv("ML_DASH_BUFFER_ENABLED", "false")
    with Experiment(prefix="a/b/c", dash_root=dash_root).run as exp:
        exp.tracks("t").append(v=1, _ts=1.0)
        exp.metrics("m").log(v=1)
        assert len(exp.tracks("t")) == 1 and len(exp.metrics("m")) == 1
        exp.tracks("t").append(w=2, _ts=1.0)  # merged into the committed entry all the same
        assert exp.tracks("t").list_entries() == [{"timestamp": 1.0, "v": 1, "w": 2}]


def test_a_reader_in_another_process_sees_whole_snapshots(dash_root):
    """Each snapshot adds one entry to two tracks and amends the previous one: a reader
    polling in another process must always see equal counts and merged entries."""
    reader = subprocess.Popen([sys.executable, "-c", f"""
import sys, time, ml_dash
deadline = time.time() + 20
while time.time() < deadline:
    try:
        view = ml_dash.load("a/b/c", dash_root={dash_root!r})
    except FileNotFoundError:
        continue
    seen = 0
    while seen < 300 and time.time() < deadline:
        a, b = view.tracks("a").list_entries(), view.tracks("b").list_entries()
        if len(a) != len(b):
            print("split", len(a), len(b)); sys.exit(1)
        if a and not all("late" in e for e in a[:-1]):
            print("unmerged", a[:-1]); sys.exit(1)
        seen = len(a)
    sys.exit(0 if seen >= 300 else 2)
"""], env=dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", "")))
    with Experiment(prefix="a/b/c", dash_root=dash_root).run as exp:
        for i in range(301):
            if i:
                exp.tracks("a").append(late=True, _ts=float(i - 1))
            exp.tracks("a").append(v=i, _ts=float(i))
            exp.tracks("b").append(v=i, _ts=float(i))
            exp.flush()
    assert reader.wait(timeout=60) == 0


# -- crash safety of an amend -----------------------------------------------------------

AMEND_THEN_DIE = """
import sys, time, ml_dash
from ml_dash.storage import faults
exp = ml_dash.Experiment(prefix="a/b/c", dash_root=sys.argv[1], sync_interval=0.01)
exp.run.start()
exp.tracks("t").append(a=1.0, _ts=1.0).append(a=2.0, _ts=2.0)
exp.flush()
time.sleep(0.3)  # the background sync records a watermark past both entries
faults.configure(sys.argv[2] + ":kill")
exp.tracks("t").append(b=3.0, a=5.0, _ts=2.0)  # amends the committed entry at 2.0
exp.flush()
"""


@pytest.mark.parametrize("point, merged", [("before_columns", False), ("before_commit", False),
                                           ("after_commit", True)])
def test_a_kill_during_an_amend_leaves_the_old_or_the_merged_entry(dash_root, point, merged):
    done = subprocess.run([sys.executable, "-c", AMEND_THEN_DIE, dash_root, point])
    assert done.returncode == -9
    want = {"timestamp": 2.0, "a": 5.0, "b": 3.0} if merged else {"timestamp": 2.0, "a": 2.0}
    assert load("a/b/c", dash_root=dash_root).tracks("t").list_entries()[1] == want
    Experiment(prefix="a/b/c", dash_root=dash_root).run.start().run.complete()  # reopen: recovery
    track = load("a/b/c", dash_root=dash_root).tracks("t")
    assert track.list_entries()[1] == want
    for key in track.keys():  # every column slot agrees with the rows
        rows = [entry.get("timestamp" if key == "_ts" else key, np.nan) for entry in track.list_entries()]
        np.testing.assert_array_equal(track.column(key), np.array(rows, dtype=float))
    assert ml_dash.check("a/b/c", dash_root=dash_root, repair=True).repaired == []


def test_a_failed_amend_puts_the_columns_back_and_stays_staged(exp):
    from ml_dash.storage import faults
    track = exp.tracks("t")
    track.append(a=1.0, _ts=1.0)
    exp.flush()
    track.append(a=9.0, _ts=1.0)
    faults.configure("before_commit:enospc")
    try:
        with pytest.raises(ml_dash.StorageError):
            exp.flush()
    finally:
        faults.configure(None)
    assert list(track.column("a")) == [1.0] and track.list_entries()[0]["a"] == 1.0
    exp.flush()
    assert list(track.column("a")) == [9.0] and track.list_entries()[0]["a"] == 9.0


def test_the_command_line_shows_and_reads_tracks(dash_root, capsys):
    from ml_dash.cli import main
    with Experiment(prefix="a/b/c", dash_root=dash_root).run as exp:
        exp.metrics("train").log(loss=1.0)
        for i in range(5):
            exp.tracks("robot/pose").append(x=float(i), q=[i, 1], _ts=100.0 + i)
    assert main(["ls", "--dash-root", dash_root]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[-1] == "TRACKS" and listed[1].endswith("robot/pose:5")
    assert main(["show", "a/b/c", "--dash-root", dash_root]) == 0
    shown = capsys.readouterr().out
    assert "tracks" in shown and "robot/pose" in shown and "TRACK" in shown
    assert main(["read", "a/b/c", "--track", "robot/pose", "--tail", "2", "--json",
                 "--dash-root", dash_root]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["index"] for row in rows] == [3, 4] and rows[1]["data"]["x"] == 4.0
    assert main(["read", "a/b/c", "--track", "robot/pos", "--dash-root", dash_root]) == 1
    assert "did you mean robot/pose" in capsys.readouterr().err
    assert main(["read", "a/b/c", "--dash-root", dash_root]) == 1


def test_threads_appending_while_another_flushes_lose_nothing(exp):
    """Automatic times from several threads, a flush loop beside them: every entry
    is stored once, in _ts order, and no append is refused as too old."""
    errors = []
    stop = threading.Event()

    def append(worker):
        try:
            for i in range(2000):
                exp.tracks("shared").append(worker=worker, i=i)
                exp.tracks(f"own/{worker}").append(i=i, _ts=float(i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def flush():
        while not stop.is_set():
            exp.flush()
    flusher = threading.Thread(target=flush)
    flusher.start()
    workers = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    flusher.join()
    exp.flush()
    assert errors == []
    shared = exp.tracks("shared")
    assert len(shared) == 8000 and np.all(np.diff(shared.timestamps()) > 0)
    assert sorted((e["worker"], e["i"]) for e in shared.list_entries()) == [
        (w, i) for w in range(4) for i in range(2000)]
    assert all(len(exp.tracks(f"own/{w}")) == 2000 for w in range(4))


def test_text_that_is_not_utf8_is_refused_at_append_and_stages_nothing(exp):
    track = exp.tracks("t")
    track.append(a=1, _ts=1.0)
    bad = [{"name": "bad \udc80 text"}, {"\ud800": 1}, {"q": ["ok", "\udfff"]},
           {"cam": {"label": "\ud800"}}, {"cam": {"\ud800": 1}}, {"m": {"k": {"\udc80": 2}}}]
    for fields in bad:
        with pytest.raises(TypeError, match="track 't': field .* not valid UTF-8"):
            track.append(**fields, _ts=1.0)
        with pytest.raises(TypeError, match="track 't': field .* not valid UTF-8"):
            track.append(fields, _ts=1.5)
    track.append(a=2, word="café", _ts=2.0)
    exp.metrics("m").log(v=1)
    exp.files.save_text("v1", to="a.txt")  # an unrelated commit no longer meets a bad entry
    exp.flush()
    assert track.list_entries() == [{"timestamp": 1.0, "a": 1},
                                    {"timestamp": 2.0, "a": 2, "word": "café"}]
    assert len(exp.metrics("m")) == 1 and exp.files("a.txt").exists()


def test_a_positional_dict_of_fields(exp):
    exp.tracks("t").append({"x": 1.0, "cam": {"k": 2}}, y=3, _ts=1.0)
    with pytest.raises(TypeError, match="field names must be non-empty strings"):
        exp.tracks("t").append({1: 2.0}, _ts=2.0)
    with pytest.raises(TypeError, match="takes a dict"):
        exp.tracks("t").append([1, 2])
    exp.flush()
    assert exp.tracks("t").list_entries() == [{"timestamp": 1.0, "x": 1.0, "cam.k": 2, "y": 3}]


def test_a_views_mocap_uses_the_stored_description(dash_root):
    with Experiment(prefix="a/b/c", dash_root=dash_root).run as exp:
        exp.tracks("pose", description="end effector", tags=["arm"], metadata={"fps": 50}).append(
            x=1.0, _ts=0.0)
    mocap = load("a/b/c", dash_root=dash_root).tracks("pose").read(format="mocap")
    assert mocap["metadata"]["fps"] == 50 and mocap["metadata"]["description"] == "end effector"
    assert mocap["metadata"]["tags"] == ["arm"]


def test_timestamp_is_the_references_spelling_of_ts(exp):
    exp.tracks("sensor/temp").append(timestamp=5.0, data={"value": 25.0})
    exp.tracks("sensor/temp").append({"timestamp": 5.0, "unit": "C"})
    exp.tracks("sensor/temp").append({"_ts": 5.0, "k": 1})  # not a field: it would be the _ts column
    exp.flush()
    assert exp.tracks("sensor/temp").list_entries() == [
        {"timestamp": 5.0, "data.value": 25.0, "unit": "C", "k": 1}]
    assert list(exp.tracks("sensor/temp").column("_ts")) == [5.0]


def test_times_past_floats_range_are_refused_naming_the_argument(exp):
    track = exp.tracks("t").append(x=1, _ts=1.0).flush()
    huge = 10 ** 400
    with pytest.raises(ValueError, match="findByTime"):
        track.slice().findByTime(huge)
    with pytest.raises(ValueError, match="findByTime"):
        track.slice().findByTime([1.0, huge])
    with pytest.raises(ValueError, match="start_timestamp"):
        track.slice(huge)
    with pytest.raises(ValueError, match="end_timestamp"):
        track.read(end_timestamp=huge)
    with pytest.raises(ValueError, match="start_timestamp"):
        track.index_range(-huge)
    assert track.read(end_timestamp=10 ** 20)["count"] == 1  # a big int that fits a float


def test_a_failed_commit_lowers_the_floor_back_to_what_is_committed(exp):
    from ml_dash.storage import faults
    track = exp.tracks("t")
    track.append(a=1, _ts=1.0).flush()
    track.append(a=10, _ts=10.0)
    faults.configure("before_commit:enospc")
    try:
        with pytest.raises(ml_dash.StorageError):
            exp.flush()
    finally:
        faults.configure(None)
    track.append(a=5, _ts=5.0)  # older than the entry still staged, newer than the committed one
    with pytest.raises(ValueError, match="older than its last committed entry"):
        track.append(a=0, _ts=0.5)
    exp.flush()
    assert [e["a"] for e in track.list_entries()] == [1, 5, 10]
    with pytest.raises(ValueError, match="older than its last committed entry"):
        track.append(a=7, _ts=7.0)


def _strict(text):
    """Parse JSON as strict readers (JSON.parse, jq) do: NaN and Infinity are refused."""
    def refuse(word):
        raise ValueError(f"not JSON: {word}")
    return json.loads(text, parse_constant=refuse)


def test_jsonl_and_the_command_lines_json_write_non_finite_numbers_as_null(dash_root, capsys):
    from ml_dash.cli import main
    with Experiment(prefix="a/b/c", dash_root=dash_root).run as exp:
        track = exp.tracks("t")
        track.append(x=float("nan"), y=[float("inf"), 1.0], z={"w": -float("inf")}, _ts=1.0)
        track.append(x=2.5, _ts=2.0).flush()
        lines = track.read(format="jsonl").decode().splitlines()
        assert [_strict(line) for line in lines] == [
            {"timestamp": 1.0, "x": None, "y": [None, 1.0], "z.w": None},
            {"timestamp": 2.0, "x": 2.5}]
        assert np.isnan(track.read()["entries"][0]["x"])  # stored as logged; only the text says null
        exp.metrics("m").log(v=float("nan"))
    for target in (["--track", "t"], ["m"]):
        assert main(["read", "a/b/c", *target, "--json", "--dash-root", dash_root]) == 0
        rows = [_strict(line) for line in capsys.readouterr().out.splitlines()]
        assert None in (rows[0]["data"].get("x"), rows[0]["data"].get("v"))


def test_mocap_refuses_a_field_named_time_rather_than_show_it_as_the_frames_time(exp):
    track = exp.tracks("pose").append(time=99.0, x=1, _ts=2.0).append(x=2, _ts=3.0).flush()
    with pytest.raises(ValueError, match="track 'pose'.*'time'"):
        track.read(format="mocap")
    frames = track.read(format="mocap", columns=["x"])["frames"]
    assert frames == [{"time": 2.0, "x": 1}, {"time": 3.0, "x": 2}]
    assert track.read()["entries"][0]["time"] == 99.0  # the other formats show it as a field


def test_parquet_names_a_field_of_mixed_types(exp):
    pq = pytest.importorskip("pyarrow.parquet")
    track = exp.tracks("t").append(v=1, w=1, _ts=1.0).append(v="s", w=2.5, _ts=2.0).flush()
    with pytest.raises(ValueError, match=r"track 't': field 'v' holds values of types int, str"):
        track.read(format="parquet")
    table = pq.read_table(io.BytesIO(track.read(format="parquet", columns=["w"])))
    assert table.to_pydict() == {"timestamp": [1.0, 2.0], "w": [1.0, 2.5]}


def test_a_key_given_twice_by_flattening_is_refused_and_an_empty_dict_is_kept(exp):
    track = exp.tracks("t")
    for fields in ({"a.b": 1, "a": {"b": 2}}, {"a": {"b": 2}, "a.b": 1}, {"x": {"y.z": 1, "y": {"z": 2}}}):
        with pytest.raises(TypeError, match=r"track 't': field '(a\.b|x\.y\.z)' is given twice"):
            track.append(fields, _ts=1.0)
    with pytest.raises(TypeError, match="given twice"):
        track.append({"a": {"b": 2}}, **{"a.b": 1}, _ts=1.0)
    track.append(d={}, z=1, _ts=2.0).append({"e": {"f": {}}}, _ts=3.0).flush()
    assert track.list_entries() == [{"timestamp": 2.0, "d": {}, "z": 1},
                                    {"timestamp": 3.0, "e.f": {}}]  # nothing of the refused ones
    with pytest.raises(ValueError, match="track 't': cannot write these entries as Parquet"):
        track.read(format="parquet")


def test_names_that_are_not_utf8_are_refused_where_given_and_ls_still_lists(dash_root, capsys):
    from ml_dash.cli import main
    with Experiment(prefix="a/b/c", dash_root=dash_root).run as exp:
        with pytest.raises(ValueError, match=r"track topics must be valid UTF-8 text, got '\\ud800'"):
            exp.tracks("\ud800")
        with pytest.raises(ValueError, match=r"stream names must be valid UTF-8 text, got 'x\\udc80'"):
            exp.metrics("x\udc80")
        with pytest.raises(ValueError, match=r"stream names must be valid UTF-8 text"):
            exp.metrics.log(epoch=1, **{"\udfff": {"loss": 1.0}})
        exp.metrics.log(epoch=2, train={"loss": 0.5})
    assert main(["ls", "--dash-root", dash_root]) == 0
    assert "a/b/c" in capsys.readouterr().out
    with load("a/b/c", dash_root=dash_root) as view:
        assert view.metrics.names() == [None, "train"] and view.metrics.read()["total"] == 1
