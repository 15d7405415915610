"""Bad input is refused at the call that gives it, and never breaks a later call.

Each test gives one kind of input the store cannot hold (a description
that is not JSON, a key LMDB cannot take, a value nested past the limit,
text that is not UTF-8, one stream too many) and then checks that the
refusal named what was wrong, that nothing of the refused call was stored,
and that the run, its dash root and every later valid call still work.
"""

import datetime
import os
import time

import lmdb
import numpy as np
import pytest

import ml_dash
from ml_dash import Experiment, load

PREFIX = "alice/proj/exp"


def nested_list(levels):
    value = 1
    for _ in range(levels):
        value = [value]
    return value


def nested_dict(levels, key="a"):
    value = 1
    for _ in range(levels):
        value = {key: value}
    return value


def assert_run_is_whole(dash_root, prefix=PREFIX):
    """Reopening, loading, listing and checking the run all still work."""
    with Experiment(prefix=prefix, dash_root=dash_root).run as again:
        again.metrics("after").log(x=1)
    assert load(prefix, dash_root=dash_root).metrics("after").column("x").tolist() == [1.0]
    assert [run["prefix"] for run in ml_dash.list_experiments(dash_root=dash_root)] == [prefix]
    report = ml_dash.check(prefix, dash_root=dash_root)
    assert report.ok, report.problems


# -- descriptions, tags and metadata ------------------------------------------------


@pytest.mark.parametrize("info, words", [
    (dict(metadata={"t": datetime.datetime.now()}), ["'eval'", "'t'", "datetime"]),
    (dict(metadata={"deep": {"er": object()}}), ["'eval'", "'deep.er'", "object"]),
    (dict(metadata={1: "x"}), ["'eval'", "1", "int"]),
    (dict(metadata=["not", "a", "dict"]), ["'eval'", "metadata", "list"]),
    (dict(metadata={"path": "bad-\udcff"}), ["'eval'", "'metadata.path'", "UTF-8"]),
    (dict(metadata={"bad-\udcff": 1}), ["'eval'", "'metadata.bad-\\udcff'", "UTF-8"]),
    (dict(tags="abc"), ["'eval'", "tags", "str"]),
    (dict(tags=[1, 2]), ["'eval'", "tags", "int"]),
    (dict(description=3.5), ["'eval'", "description", "float"]),
])
def test_a_bad_stream_description_is_refused_at_the_call_and_bricks_nothing(dash_root, info, words):
    exp = Experiment(prefix=PREFIX, dash_root=dash_root)
    exp.run.start()
    exp.metrics("train").log(x=0)
    with pytest.raises(TypeError) as refused:
        exp.metrics("eval", **info)
    for word in words:
        assert word in str(refused.value)
    exp.metrics("train").log(x=1).flush()  # the next good flush commits no half entry
    exp.metrics("eval", description="fine").log(x=2)  # the name is free for a good description
    exp.run.complete()
    view = load(PREFIX, dash_root=dash_root)
    assert view.metrics("train").column("x").tolist() == [0.0, 1.0]
    assert view.metrics("eval").stats()["description"] == "fine"
    assert_run_is_whole(dash_root)


def test_good_descriptions_round_trip_converted(exp, dash_root):
    metadata = {"n": np.int64(3), "f": np.float32(0.5), "big": 10 ** 30, "t": (1, [2.5, None]),
                "nested": {"a": {"b": True}}, "é/ü": "text"}
    exp.metrics("eval", description="held out", tags=("x", "y"), metadata=metadata).log(x=1)
    exp.run.complete()
    stats = load(PREFIX, dash_root=dash_root).metrics("eval").stats()
    assert stats["description"] == "held out" and stats["tags"] == ["x", "y"]
    assert stats["metadata"] == {"n": 3, "f": 0.5, "big": 10 ** 30, "t": [1, [2.5, None]],
                                 "nested": {"a": {"b": True}}, "é/ü": "text"}
    assert type(stats["metadata"]["n"]) is int


def test_a_bad_experiment_description_is_refused_when_the_experiment_is_made(dash_root):
    with pytest.raises(TypeError, match=r"experiment 'alice/proj/exp' metadata: field 't'.*datetime"):
        Experiment(prefix=PREFIX, dash_root=dash_root, metadata={"t": datetime.date.today()})
    with pytest.raises(TypeError, match="tags must be a list of strings, got str"):
        Experiment(prefix=PREFIX, dash_root=dash_root, tags="baseline")
    with pytest.raises(TypeError, match="description must be a str"):
        Experiment(prefix=PREFIX, dash_root=dash_root, description=b"bytes")
    assert not os.path.exists(os.path.join(dash_root, PREFIX))  # nothing was made
    assert_run_is_whole(dash_root)


def test_a_bad_file_description_is_refused_before_its_contents_are_written(exp, dash_root):
    contents = os.path.join(dash_root, PREFIX, "files")
    before = sorted(os.listdir(contents)) if os.path.isdir(contents) else []
    with pytest.raises(TypeError, match=r"file 'notes.txt' metadata: field 'when'.*datetime"):
        exp.files.save_text("hello", to="notes.txt", metadata={"when": datetime.datetime.now()})
    with pytest.raises(TypeError, match=r"file 'notes.txt': 'description' holds.*UTF-8"):
        exp.files.save_text("hello", to="notes.txt", description="bad-\udcff")
    after = sorted(os.listdir(contents)) if os.path.isdir(contents) else []
    assert after == before and exp.files.list() == []
    exp.files.save_text("hello", to="notes.txt", tags=["ok"], metadata={"n": np.int32(1)})
    exp.run.complete()
    assert load(PREFIX, dash_root=dash_root).files.list()[0]["metadata"] == {"n": 1}
    assert_run_is_whole(dash_root)


def test_the_writer_stages_no_half_stream_when_its_record_cannot_be_encoded(dash_root):
    """The engine under the API: a stream record that cannot be encoded changes nothing.

    The API no longer lets such a record through (the test above), so the
    writer is driven directly, as metrics.py drives it.
    """
    from ml_dash.storage import Store  # what the writer is told of a stream
    from ml_dash.storage import StreamSpec as Stream

    path = os.path.join(dash_root, "alice", "engine")
    store = Store.open(path, write=True)
    writer = store.writer
    try:
        with pytest.raises(TypeError, match="stream 'eval'"):
            writer.commit([(Stream("eval", {"metadata": {"t": datetime.date.today()}}), {"x": 1}, 1.0)])
        writer.commit([(Stream("train", {}), {"x": 1}, 1.0)])
        writer.commit([(Stream("eval", {}), {"x": 2}, 2.0)])
    finally:
        store.close()
    assert load("alice/engine", dash_root=dash_root).metrics("eval").column("x").tolist() == [2.0]
    assert_run_is_whole(dash_root, "alice/engine")


# -- keys LMDB cannot take, routed dicts ------------------------------------------------


def test_a_routed_dict_with_a_key_that_is_not_a_string_is_refused_at_the_call(exp, dash_root):
    exp.metrics.log(epoch=0, eval={"loss": 0.5})
    for bad in ({1: 0.5}, {"": 0.5}, {None: 1}):
        with pytest.raises(TypeError, match=r"stream 'eval': field names must be non-empty strings"):
            exp.metrics.log(epoch=1, eval=bad)
    exp.flush()  # used to fail, and so did every flush after
    exp.metrics.log(epoch=2, eval={"loss": 0.25}).flush()
    exp.run.complete()
    view = load(PREFIX, dash_root=dash_root)
    assert view.metrics.column("epoch").tolist() == [0.0, 2.0]  # nothing of a refused call
    assert view.metrics("eval").column("loss").tolist() == [0.5, 0.25]
    assert_run_is_whole(dash_root)


def test_the_key_limit_is_lmdbs(tmp_path):
    from ml_dash.storage.keys import MAX_KEY_SIZE

    env = lmdb.open(str(tmp_path / "env"))
    try:
        assert env.max_key_size() == MAX_KEY_SIZE
    finally:
        env.close()


def test_a_params_key_longer_than_the_store_allows_is_refused_at_the_call(exp, dash_root):
    exp.params.set(a=1)
    with pytest.raises(ValueError, match=r"params key 'kkk.*600 bytes.*at most 511"):
        exp.params.set(b=2, **{"k" * 600: 1})
    with pytest.raises(ValueError, match="512 bytes"):  # the UTF-8 length, not the characters
        exp.params.set(**{"é" * 256: 1})
    with pytest.raises(ValueError, match="params key 'model.width.width"):
        exp.params.set(model=nested_dict(90, key="width"))  # flattened: long, though not deep
    exp.params.set(**{"é" * 255: 1, "k" * 511: 2})  # exactly at the limit
    exp.flush()
    exp.run.complete()
    assert load(PREFIX, dash_root=dash_root).params.get() == {"a": 1, "é" * 255: 1, "k" * 511: 2}
    assert_run_is_whole(dash_root)


def test_params_nested_past_the_limit_are_refused_at_the_call(exp, dash_root):
    class Loop:
        size = 3
    Loop.again = Loop  # a class that refers to itself

    for value in (nested_dict(300), nested_list(300)):
        with pytest.raises(TypeError, match="nested more than 100 levels.*nothing of this set"):
            exp.params.set(ok=1, model=value)
    looped = {"size": 3}
    looped["inner"] = {"again": looped}  # a dict inside itself
    for value, path in ((Loop, "model.again"), (looped, "model.inner.again")):
        with pytest.raises(TypeError, match=rf"'{path}' contains itself.*nothing of this set"):
            exp.params.set(ok=1, model=value)
    exp.params.set(model=nested_dict(20), ok=2).log(more=nested_list(50))
    exp.run.complete()
    stored = load(PREFIX, dash_root=dash_root).params.get()
    assert stored == {"model" + ".a" * 20: 1, "ok": 2, "more": nested_list(50)}
    assert_run_is_whole(dash_root)


def test_a_file_path_longer_than_the_store_allows_is_refused_at_the_call(exp, dash_root):
    long_name = "n" * 600 + ".txt"
    with pytest.raises(ValueError, match=r"file path 'nnn.*bytes.*at most 511"):
        exp.files.save_text("x", to=long_name)
    folder = exp.files("f" * 300)
    with pytest.raises(ValueError, match="at most 511"):  # the stored path is folder/name
        folder.save_text("x", to="g" * 300 + ".txt")
    with pytest.raises(ValueError, match="at most 511"):
        exp.files(long_name)
    assert folder.list() == [] and not folder("g" * 300 + ".txt").exists()
    contents = os.path.join(dash_root, PREFIX, "files")
    assert not os.path.isdir(contents) or os.listdir(contents) == []
    exp.files.save_text("x", to="n" * 507 + ".txt")  # 511 bytes: fits
    exp.run.complete()
    assert [r["filename"] for r in load(PREFIX, dash_root=dash_root).files.list()] == ["n" * 507 + ".txt"]
    assert_run_is_whole(dash_root)


# -- params.set() is all or nothing --------------------------------------------------


def test_a_params_set_that_raised_stored_nothing_and_live_params_equal_stored(exp, dash_root):
    def stored():
        return load(PREFIX, dash_root=dash_root).params.get()

    exp.metrics("t").log(**{"bad-\udcff": 1.0})  # a point the next flush refuses
    exp.params.set(model=1)  # its own snapshot: the point above cannot make it fail
    assert exp.params.get() == stored() == {"model": 1}
    with pytest.raises(TypeError, match="dropped"):
        exp.flush()
    with pytest.raises(TypeError):
        exp.params.set(model=dict(width=2), bad=object())
    exp.flush()
    assert exp.params.get() == stored() == {"model": 1}
    exp.params.set(model=dict(width=2))  # replaces "model": never both
    assert exp.params.get() == stored() == {"model.width": 2}
    exp.run.complete()
    assert stored() == {"model.width": 2}


def test_a_params_set_whose_commit_fails_stores_nothing_later_either(dash_root):
    import subprocess
    import sys

    # The second commit fails (1: the first set, 2: the second; the run's start is
    # stored by the transaction that opens the store), and so does every one after
    # it; then the script ends and its exit cannot commit.
    script = f"""
import ml_dash
exp = ml_dash.Experiment(prefix={PREFIX!r}, dash_root={dash_root!r})
exp.run.start()
exp.params.set(model=1)
try:
    exp.params.set(model=dict(width=2))
except ml_dash.StorageError:
    print("refused", exp.params.get())
"""
    env = dict(os.environ, ML_DASH_FAULT="before_commit:eio:2")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "refused {'model': 1}", out.stderr
    assert load(PREFIX, dash_root=dash_root).params.get() == {"model": 1}
    assert_run_is_whole(dash_root)


# -- a failing automatic flush -------------------------------------------------------------


def test_a_log_that_raised_at_the_backlog_flush_did_not_stage_its_point(dash_root, monkeypatch):
    monkeypatch.setattr(ml_dash.session, "MAX_BACKLOG", 10)
    with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        train = exp.metrics("train")
        train.log(**{"bad-\udcff": 1.0})  # the automatic flush will refuse this one
        refused = 0
        for step in range(30):
            try:
                train.log(step=step)
            except TypeError as exc:  # raised by the automatic flush, about the bad point
                assert "dropped" in str(exc)
                refused += 1
                train.log(step=step)  # the retry a user makes
        assert refused == 1
    column = load(PREFIX, dash_root=dash_root).metrics("train").column("step")
    assert column.tolist() == list(range(30))  # each point once


# -- errors that are documented ones ---------------------------------------------------------


@pytest.mark.parametrize("value", [nested_list(500), nested_dict(500), "self"])
def test_values_nested_past_the_limit_are_refused_at_the_call(exp, dash_root, value):
    if value == "self":
        value = [1]
        value.append(value)
    with pytest.raises(TypeError, match=r"stream 'train': field 'x.*nested more than 100 levels"):
        exp.metrics("train").log(x=value, y=1)
    with pytest.raises(TypeError, match="nested more than 100 levels"):
        exp.metrics.log(train=dict(x=value))
    with pytest.raises(TypeError, match="log metadata: field 'x.*nested more than 100"):
        exp.log("message", x=value)
    exp.metrics("train").log(x=nested_list(99), y=2).flush()
    exp.run.complete()
    view = load(PREFIX, dash_root=dash_root)
    assert view.metrics("train").read()["data"][0]["data"]["x"] == nested_list(99)
    assert view.logs.read()["data"] == []
    assert_run_is_whole(dash_root)


@pytest.mark.parametrize("ts, error, words", [
    (2 ** 2000, ValueError, "finite"), (float("nan"), ValueError, "finite"),
    (float("inf"), ValueError, "finite"), (1e18, ValueError, "years 1 to 9999"),
    (-1e12, ValueError, "years 1 to 9999"), ("12", TypeError, "str"), (b"12", TypeError, "bytes"),
    (True, TypeError, "bool"), (datetime.datetime.now(), TypeError, "datetime"),
    (np.zeros(2), TypeError, "ndarray"),
], ids=["2**2000", "nan", "inf", "year 31 billion", "before year 1", "str", "bytes", "bool",
        "datetime", "array"])
def test_a_ts_that_is_not_a_finite_number_is_refused(exp, ts, error, words):
    with pytest.raises(error, match=f"_ts.*{words}"):
        exp.metrics("t").log(_ts=ts, x=1)
    with pytest.raises(error, match=f"_ts.*{words}"):
        exp.metrics.log(_ts=ts, t=dict(x=1))
    for good in (12, 12.5, np.float64(13), np.int32(14), np.array(15.0)):
        exp.metrics("t").log(_ts=good, x=1)
    exp.metrics("t").log(_ts=-62135596800, x=1).log(_ts=253402300799.5, x=1)  # the ends
    exp.flush()
    assert exp.metrics("t").column("_ts").tolist() == [12, 12.5, 13, 14, 15, -62135596800, 253402300799.5]
    assert exp.metrics("t").stats()["lastDataAt"].startswith("9999-12-31T23:59:59")


def test_text_that_is_not_utf8_is_refused_at_the_call_by_params_logs_and_files(exp, dash_root):
    bad = "bad-\udcff"
    with pytest.raises(TypeError, match="params: 'a' holds a str that is not valid UTF-8"):
        exp.params.set(a=bad)
    with pytest.raises(TypeError, match=r"params: 'b.c' .*UTF-8"):
        exp.params.set(b=[1, {"c": bad}])
    with pytest.raises(ValueError, match="params key 'bad-.*UTF-8"):
        exp.params.set(**{bad: 1})
    with pytest.raises(TypeError, match="log: 'message' holds a str that is not valid UTF-8"):
        exp.log(bad)
    with pytest.raises(TypeError, match="log: 'metadata.where' holds a str that is not valid UTF-8"):
        exp.logs.info("fine", where=bad)
    with pytest.raises(ValueError, match="file path 'bad-.*UTF-8"):
        exp.files.save_text("x", to=bad)
    with pytest.raises(ValueError, match="file path 'bad-.*UTF-8"):
        exp.files(bad).exists()
    exp.log("kept")
    exp.params.set(a=1)
    exp.run.complete()
    view = load(PREFIX, dash_root=dash_root)
    assert view.params.get() == {"a": 1} and view.files.list() == []
    assert [row["message"] for row in view.logs.read()["data"]] == ["kept"]  # numbered from 0
    assert view.logs.read()["data"][0]["index"] == 0
    assert_run_is_whole(dash_root)


def test_a_second_experiment_on_the_same_run_in_one_process_says_so(dash_root):
    first = Experiment(prefix=PREFIX, dash_root=dash_root)
    first.run.start()
    second = Experiment(prefix=PREFIX, dash_root=dash_root, lock_timeout=30)
    started = time.monotonic()
    with pytest.raises(ml_dash.WriterLockedError, match="already open for writing in this process"):
        second.run.start()
    assert time.monotonic() - started < 5  # at once, not after lock_timeout
    first.metrics("t").log(x=1)
    first.run.complete()
    with second.run:  # free once the first closed it
        second.metrics("t").log(x=2)
    assert load(PREFIX, dash_root=dash_root).metrics("t").column("x").tolist() == [1.0, 2.0]
