"""exp.log / exp.logs: levels, printing, storing, reading back, threads."""

import threading

import pytest

from ml_dash import Experiment, load


def test_log_prints_at_once_errors_to_stderr(exp, capsys):
    exp.log("starting", lr=0.1)
    exp.logs.info("epoch done", loss=0.25, epoch=1)
    exp.logs.debug("dbg")
    exp.logs.warn("careful")
    exp.logs.warning("careful too")
    exp.logs.error("broken", code=3)
    exp.logs.fatal("dead")
    out, err = capsys.readouterr()
    assert out.splitlines() == ["[INFO] starting lr=0.1", "[INFO] epoch done loss=0.25 epoch=1",
                                "[DEBUG] dbg", "[WARN] careful", "[WARN] careful too"]
    assert err.splitlines() == ["[ERROR] broken code=3", "[FATAL] dead"]


def test_records_read_back_with_metrics_page_shape(exp):
    exp.log("a", level="INFO", metadata={"x": 1, "y": 2}, y=3)
    exp.log("b", level="Warning")
    exp.logs.error("c")
    exp.flush()
    page = exp.logs.read()
    assert set(page) == {"data", "startIndex", "endIndex", "total", "hasMore"}
    assert [(r["index"], r["level"], r["message"], r["metadata"]) for r in page["data"]] == [
        (0, "info", "a", {"x": 1, "y": 3}), (1, "warn", "b", {}), (2, "error", "c", {})]
    assert page["startIndex"] == 0 and page["endIndex"] == 2 and page["total"] == 3
    assert page["hasMore"] is False
    assert page["data"][0]["timestamp"].endswith("Z")


def test_paging_and_level_filter(exp):
    for i in range(10):
        exp.log(f"m{i}", level="error" if i % 3 == 0 else "info")
    exp.flush()
    page = exp.logs.read(start_index=4, limit=3)
    assert [r["index"] for r in page["data"]] == [4, 5, 6]
    assert page["endIndex"] == 6 and page["hasMore"] is True
    assert exp.logs.read(start_index=8, limit=5)["hasMore"] is False
    errors = exp.logs.read(level="ERROR")
    assert [r["message"] for r in errors["data"]] == ["m0", "m3", "m6", "m9"]
    first_two = exp.logs.read(start_index=1, limit=2, level="error")
    assert [r["index"] for r in first_two["data"]] == [3, 6]
    assert first_two["endIndex"] == 6 and first_two["hasMore"] is True
    empty = exp.logs.read(start_index=50)
    assert empty["data"] == [] and empty["endIndex"] == 49 and empty["hasMore"] is False
    assert exp.logs.read(limit=0)["data"] == []


def test_bad_arguments(exp):
    with pytest.raises(ValueError, match="'verbose'"):
        exp.log("x", level="verbose")
    with pytest.raises(TypeError, match="'obj'"):
        exp.logs.info("x", obj=object())
    with pytest.raises(TypeError, match="dict"):
        exp.log("x", metadata=["not", "a", "dict"])
    with pytest.raises(ValueError):
        exp.logs.read(start_index=-1)
    with pytest.raises(ValueError):
        exp.logs.read(level="nope")
    exp.flush()
    assert exp.logs.read()["data"] == []


def test_committed_with_the_next_flush_or_at_once(exp, capsys):
    exp.log("staged")
    with load(exp.prefix, dash_root=exp.dash_root) as view:
        assert view.logs.read()["data"] == []
        exp.metrics("train").log(loss=1.0).flush()
        assert [r["message"] for r in view.logs.read()["data"]] == ["staged"]
        exp.log("now", _flush=True)
        assert view.logs.read()["total"] == 2


def test_numbering_continues_after_reopening(dash_root, capsys):
    for run in range(2):
        with Experiment(prefix="alice/proj/l", dash_root=dash_root).run as exp:
            exp.log(f"run {run}")
            exp.log(f"run {run} again")
    with load("alice/proj/l", dash_root=dash_root) as view:
        rows = view.logs.read()["data"]
    assert [(r["index"], r["message"]) for r in rows] == [
        (0, "run 0"), (1, "run 0 again"), (2, "run 1"), (3, "run 1 again")]


def test_threads_print_and_store_in_the_same_order(exp, capsys):
    def work(t):
        for i in range(200):
            exp.logs.info(f"t{t} {i}")
            if i % 50 == 0:
                exp.flush()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    exp.flush()
    printed = [line.removeprefix("[INFO] ") for line in capsys.readouterr().out.splitlines()]
    rows = exp.logs.read(limit=10_000)["data"]
    assert [r["index"] for r in rows] == list(range(800))
    assert [r["message"] for r in rows] == printed
    for t in range(4):
        assert [m for m in printed if m.startswith(f"t{t} ")] == [f"t{t} {i}" for i in range(200)]


def test_logs_before_start_raise(dash_root):
    exp = Experiment(prefix="alice/proj/never", dash_root=dash_root)
    with pytest.raises(RuntimeError, match="not started"):
        exp.log("x")
    with pytest.raises(RuntimeError, match="not started"):
        exp.logs.info("x")


def test_levels_by_the_reference_packages_names(exp):
    from ml_dash import LogLevel

    exp.log("enum", level=LogLevel.WARN)
    exp.log("value", level=LogLevel.ERROR.value)
    exp.log("none", level=None)  # the reference's default: info
    exp.flush()
    assert [(r["level"], r["message"]) for r in exp.logs.read()["data"]] == [
        ("warn", "enum"), ("error", "value"), ("info", "none")]
    assert [level.value for level in LogLevel] == ["debug", "info", "warn", "error", "fatal"]
    assert LogLevel.validate("WARNING") == "warn" and LogLevel.validate(LogLevel.FATAL) == "fatal"
    with pytest.raises(ValueError, match="'verbose'"):
        LogLevel.validate("verbose")


def test_log_without_a_message_is_the_deprecated_fluent_style(exp, capsys):
    from ml_dash import LogBuilder

    with pytest.warns(DeprecationWarning, match=r"exp.logs.info\(message"):
        builder = exp.log(metadata={"run": 1}, epoch=2)
    assert isinstance(builder, LogBuilder)
    builder.info("epoch done", loss=0.5)
    builder.error("also", epoch=3)  # the call's own metadata wins
    exp.log(None)  # a message that is None is a message: "None", not a builder
    assert capsys.readouterr().out.splitlines() == [
        "[INFO] epoch done run=1 epoch=2 loss=0.5", "[INFO] None"]
    exp.flush()
    assert [(r["index"], r["level"], r["message"], r["metadata"]) for r in exp.logs.read()["data"]] == [
        (0, "info", "epoch done", {"run": 1, "epoch": 2, "loss": 0.5}),
        (1, "error", "also", {"run": 1, "epoch": 3}),
        (2, "info", "None", {})]


def test_the_fluent_style_refuses_bad_input_where_it_is_given(exp, dash_root):
    with pytest.raises(TypeError, match="'bad'.*object"):
        exp.log(bad=object())
    with pytest.raises(TypeError, match="takes no level"):
        exp.log(level="error")
    fresh = Experiment(prefix="alice/proj/unstarted", dash_root=dash_root)
    with pytest.raises(RuntimeError, match="not started"):
        fresh.log(epoch=1)
    exp.flush()
    assert exp.logs.read()["data"] == []


def test_level_methods_take_metadata_as_log_does(exp):
    # As the reference package's docs write it: exp.logs.info("...", metadata={...}).
    exp.logs.info("started", metadata={"epoch": 1, "lr": 0.1}, lr=0.2)
    exp.logs.error("failed", error_code=500)
    with pytest.raises(TypeError, match="log metadata must be a dict, got str"):
        exp.logs.warn("x", metadata="not a dict")
    exp.flush()
    assert [r["metadata"] for r in exp.logs.read()["data"]] == [
        {"epoch": 1, "lr": 0.2}, {"error_code": 500}]
