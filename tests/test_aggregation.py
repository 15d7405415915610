"""Per-batch aggregation: buffer(), buffer.log_summary(), buffer.peek(), summary_cache."""

import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_dash import Experiment

# Tests that leave values buffered on purpose: the warning has its own test.
pytestmark = pytest.mark.filterwarnings("ignore:experiment .* never summarized")

ALL = ("mean", "std", "min", "max", "count", "median", "sum",
       "p50", "p90", "p95", "p99", "first", "last")


def reference(values):
    """The statistics API.md specifies, in plain Python, NaN and None left out."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return {}
    n = len(xs)
    s = sorted(xs)
    mean = math.fsum(xs) / n

    def percentile(q):  # linear interpolation between closest ranks
        pos = (n - 1) * q / 100
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return {
        "mean": mean,
        "std": math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0,
        "min": s[0], "max": s[-1], "count": n,
        "median": s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2,
        "sum": math.fsum(xs),
        "p50": percentile(50), "p90": percentile(90), "p95": percentile(95), "p99": percentile(99),
        "first": xs[0], "last": xs[-1],
    }


@pytest.fixture(scope="module")
def shared_exp(tmp_path_factory):
    experiment = Experiment(prefix="alice/proj/agg", dash_root=str(tmp_path_factory.mktemp("dash")))
    experiment.run.start()
    yield experiment
    experiment.run.complete()


def last_point(stream):
    stream.flush()
    return stream.read(start_index=len(stream) - 1, limit=1)["data"][0]["data"]


values_lists = st.lists(
    st.one_of(st.floats(-1e6, 1e6), st.integers(-10**6, 10**6), st.none(), st.just(float("nan"))),
    min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(loss=values_lists, acc=values_lists)
def test_log_summary_matches_a_plain_python_reference(shared_exp, loss, acc):
    stream = shared_exp.metrics("train")
    for i in range(max(len(loss), len(acc))):
        fields = {}
        if i < len(loss):
            fields["loss"] = loss[i]
        if i < len(acc):
            fields["acc"] = acc[i]
        stream.buffer(**fields)
    shared_exp.metrics.buffer.log_summary(*ALL, marker=1)
    point = last_point(stream)
    assert point["marker"] == 1
    for key, values in (("loss", loss), ("acc", acc)):
        expected = reference(values)
        got = {k.split(".", 1)[1]: v for k, v in point.items() if k.startswith(key + ".")}
        assert set(got) == set(expected)  # all-NaN: no statistics at all
        for agg, value in expected.items():
            assert got[agg] == pytest.approx(value, rel=1e-9, abs=1e-6), agg
        if expected:
            assert type(got["count"]) is int


def test_default_is_mean_and_extra_fields_and_one_ts_for_all_streams(exp):
    for v in (1.0, 2.0, 6.0):
        exp.metrics("train").buffer(loss=v)
        exp.metrics("eval").buffer(loss=v * 10)
        exp.metrics.buffer(lr=0.5)
    assert exp.metrics.buffer.log_summary(epoch=3) is exp.metrics
    exp.flush()
    train = exp.metrics("train").read()["data"][0]["data"]
    evaluation = exp.metrics("eval").read()["data"][0]["data"]
    root = exp.metrics.read()["data"][0]["data"]
    assert train == {"epoch": 3, "loss.mean": 3.0, "_ts": train["_ts"]}
    assert evaluation["loss.mean"] == 30.0 and root["lr.mean"] == 0.5
    assert train["_ts"] == evaluation["_ts"] == root["_ts"]


def test_log_summary_clears_buffers(exp):
    exp.metrics("train").buffer(loss=1.0)
    exp.metrics.buffer.log_summary()
    exp.metrics.buffer.log_summary()
    exp.flush()
    assert len(exp.metrics("train")) == 1
    assert exp.metrics.buffer.peek() == {}


def test_std_of_one_value_is_zero_and_median_of_even_count(exp):
    exp.metrics("a").buffer(x=4.0)
    exp.metrics("b").buffer(x=1.0).buffer(x=2.0).buffer(x=10.0).buffer(x=20.0)
    exp.metrics.buffer.log_summary("std", "median", "count").flush()
    a = exp.metrics("a").read()["data"][0]["data"]
    b = exp.metrics("b").read()["data"][0]["data"]
    assert a["x.std"] == 0.0 and a["x.count"] == 1
    assert b["x.median"] == 6.0


def test_unknown_aggregation_raises_and_logs_nothing(exp):
    exp.metrics("train").buffer(loss=1.0)
    # The reference package's words first: its users match "Unsupported aggregation".
    with pytest.raises(ValueError, match=r"^Unsupported aggregation 'avg'; choose from mean, std"):
        exp.metrics.buffer.log_summary("mean", "avg")
    for bad, kind in ((5, "int"), (None, "NoneType"), (["mean"], "list")):
        with pytest.raises(ValueError, match=rf"Unsupported aggregation .* \({kind}\)"):
            exp.metrics.buffer.log_summary(bad)
    exp.flush()
    assert len(exp.metrics("train")) == 0
    assert exp.metrics.buffer.peek("train") == {"loss": [1.0]}


def test_buffer_converts_with_float_and_rejects_non_numbers(exp):
    stream = exp.metrics("train")
    stream.buffer(loss="0.5", flag=True, n=None)
    with pytest.raises(ValueError, match="'loss'.*list"):
        stream.buffer(loss=[1, 2])
    with pytest.raises(ValueError, match="'name'"):
        stream.buffer(name="abc")
    peeked = exp.metrics.buffer.peek("train")
    assert peeked["loss"] == [0.5] and peeked["flag"] == [1.0] and math.isnan(peeked["n"][0])
    import numpy as np
    stream.buffer(loss=np.float32(0.25), flag=np.int64(3), n=np.array(2.0))
    stream.buffer(loss=None, flag=2**80, n="1e3")
    peeked = exp.metrics.buffer.peek("train")
    assert peeked["loss"][1:2] == [0.25] and math.isnan(peeked["loss"][2])
    assert peeked["flag"] == [1.0, 3.0, 2.0**80] and peeked["n"][1:] == [2.0, 1000.0]
    with pytest.raises(ValueError, match="'flag'"):
        stream.buffer(loss=1.0, flag=10**400)
    assert len(exp.metrics.buffer.peek("train")["loss"]) == 3


def test_peek_shows_last_values_without_changing_anything(exp):
    for i in range(8):
        exp.metrics("train").buffer(loss=i, acc=i / 10)
        exp.metrics.buffer(lr=i)
    assert exp.metrics.buffer.peek("train", "loss", limit=3) == {"loss": [5.0, 6.0, 7.0]}
    everything = exp.metrics.buffer.peek(limit=2)
    assert everything == {"lr": [6.0, 7.0], "train/loss": [6.0, 7.0], "train/acc": [0.6, 0.7]}
    assert exp.metrics.buffer.peek("eval") == {}
    assert "eval" not in exp.metrics._streams  # peeking made no stream
    # limit 0 or None: every value, as in the reference package.
    assert exp.metrics.buffer.peek("train", "loss", limit=0) == {"loss": [float(i) for i in range(8)]}
    assert len(exp.metrics.buffer.peek(limit=None)["train/acc"]) == 8
    assert exp.metrics("train").summary_cache.peek(limit=0) == {}
    for bad in (-1, 2.5, "3"):
        for peek in (lambda: exp.metrics.buffer.peek("train", limit=bad),
                     lambda: exp.metrics.buffer.peek("eval", limit=bad),
                     lambda: exp.metrics("train").summary_cache.peek(limit=bad)):
            with pytest.raises(ValueError, match=r"limit must be a whole number.*got"):
                peek()
    exp.metrics.buffer.log_summary("count").flush()
    assert exp.metrics("train").read()["data"][0]["data"]["loss.count"] == 8


def test_buffer_before_start_raises(dash_root):
    experiment = Experiment(prefix="alice/proj/never", dash_root=dash_root)
    with pytest.raises(RuntimeError, match="not started"):
        experiment.metrics
    experiment.run.start()
    stream = experiment.metrics("train")
    experiment.run.complete()
    with pytest.raises(RuntimeError):
        stream.buffer(loss=1.0)


def test_unsummarized_values_warn_at_close(dash_root):
    experiment = Experiment(prefix="alice/proj/left", dash_root=dash_root)
    with pytest.warns(UserWarning, match="'train'.*log_summary"):
        with experiment.run:
            experiment.metrics("train").buffer(loss=1.0)


def test_no_warning_when_everything_was_summarized(dash_root):
    experiment = Experiment(prefix="alice/proj/clean", dash_root=dash_root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with experiment.run:
            experiment.metrics("train").buffer(loss=1.0)
            experiment.metrics.buffer.log_summary()


def test_summary_cache_store_set_summarize_peek(exp):
    cache = exp.metrics("train").summary_cache
    assert exp.metrics("train").summary_cache is cache
    for v in (1.0, 2.0, 3.0):
        cache.store(loss=v)
    cache.set(epoch=1)
    assert cache.peek("loss", limit=2) == {"loss": [2.0, 3.0]}
    cache.summarize()
    exp.flush()
    point = exp.metrics("train").read()["data"][0]["data"]
    assert point["epoch"] == 1
    assert {k: point[k] for k in point if k.startswith("loss.")} == {
        "loss.mean": 2.0, "loss.min": 1.0, "loss.max": 3.0, "loss.count": 3, "loss.std": 1.0}
    assert cache.peek() == {}


def test_summary_cache_without_clear_keeps_accumulating(exp):
    cache = exp.metrics("train").summary_cache
    cache.store(loss=1.0)
    cache.summarize(clear=False)
    cache.store(loss=3.0)
    cache.summarize()
    exp.flush()
    counts = [p["data"]["loss.count"] for p in exp.metrics("train").read()["data"]]
    means = [p["data"]["loss.mean"] for p in exp.metrics("train").read()["data"]]
    assert counts == [1, 2] and means == [1.0, 2.0]


def test_values_a_cumulative_summary_covered_do_not_warn_at_close(dash_root):
    experiment = Experiment(prefix="alice/proj/cumulative", dash_root=dash_root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with experiment.run:
            cache = experiment.metrics("train").summary_cache
            cache.store(loss=1.0)
            cache.store(loss=2.0)
            cache.summarize(clear=False)
    with pytest.warns(UserWarning, match=r"'train' \(1\)"):  # stored after the last summary
        with experiment.run:
            cache = experiment.metrics("train").summary_cache
            cache.store(loss=1.0)
            cache.summarize(clear=False)
            cache.store(loss=3.0)


def test_summary_cache_rejects_non_numbers(exp):
    with pytest.raises(ValueError, match="'loss'"):
        exp.metrics("train").summary_cache.store(loss=object())


def test_a_failing_buffer_call_keeps_none_of_its_values(exp):
    stream = exp.metrics("train")
    stream.buffer(a=1.0, b=2.0)
    with pytest.raises(ValueError, match="'c'"):
        stream.buffer(a=3.0, b=4, c="x", d=5.0)
    assert exp.metrics.buffer.peek("train") == {"a": [1.0], "b": [2.0]}


def test_bad_extra_fields_raise_before_buffers_are_cleared(exp):
    exp.metrics("train").buffer(loss=1.0)
    with pytest.raises(TypeError, match="'note'"):
        exp.metrics.buffer.log_summary(note=object())
    assert exp.metrics.buffer.peek("train") == {"loss": [1.0]}


def test_threads_buffering_at_once_lose_nothing(exp):
    import threading

    def work():
        for i in range(2_000):
            exp.metrics("train").buffer(loss=1.0, acc=float(i))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    exp.metrics.buffer.log_summary("count", "sum").flush()
    point = exp.metrics("train").read()["data"][0]["data"]
    assert point["loss.count"] == point["acc.count"] == 8_000
    assert point["acc.sum"] == 4 * sum(range(2_000))
