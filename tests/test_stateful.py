"""Property-based tests: the store against a plain in-memory model.

A hypothesis state machine applies random log / flush / close-and-reopen /
read / column / check steps to a real store and to a list-of-dicts model and
checks after every step that they agree.  The values fuzz the API boundary:
stream names and keys of any length and character, ints beyond 64 bits,
NaN, inf, -0.0, numpy scalars, nested dicts and lists, and values that must
be refused.  Each input either round-trips exactly or is refused with a
TypeError or ValueError, and a refusal never changes what was stored.

Example counts: modest by default; ``ML_DASH_HYPOTHESIS=long`` runs many
more (``pytest tests/test_stateful.py --hypothesis-show-statistics``
reports how many ran).
"""

import math
import os
import shutil
import tempfile

import numpy as np
import pytest
from exact import same
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import ml_dash
from ml_dash import Experiment, load

settings.register_profile("ci", max_examples=25, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=1000, stateful_step_count=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = "long" if os.environ.get("ML_DASH_HYPOTHESIS") == "long" else "ci"

PREFIX = "fuzz/run"
REFUSED = object()

# any character, lone surrogates included (they cannot be stored as UTF-8)
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
names = st.one_of(st.sampled_from(["train", "eval", "a.b", "é/ü", " "]),
                  st.text(min_size=1, max_size=300))
keys = st.one_of(st.sampled_from(["loss", "acc", "step", "a.b", "x"]), any_text).filter(
    lambda k: k not in ("_ts", "_flush"))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.integers(min_value=-(10 ** 400), max_value=10 ** 400),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-0.0, 2.0 ** 1023 * 1.99]),
    any_text,
    st.builds(np.float32, st.floats(width=32)), st.builds(np.int64, st.integers(-2 ** 63, 2 ** 63 - 1)),
    st.builds(np.bool_, st.booleans()), st.builds(lambda x: np.array([x]), st.floats()),
)
bad = st.one_of(st.just(b"bytes"), st.just({1, 2}), st.just(object()), st.builds(np.zeros, st.integers(2, 4)),
                st.just({"": 1}), st.just({3: "x"}))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner),
    st.dictionaries(keys, inner, max_size=3)), max_leaves=6)
fields = st.dictionaries(keys, st.one_of(values, values, values, bad), max_size=5)


def expect(value):
    """What the store must give back for ``value``, or REFUSED."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, dict):
        if not all(isinstance(k, str) and k for k in value):
            return REFUSED
        out = {k: expect(v) for k, v in value.items()}
        return REFUSED if REFUSED in out.values() else out
    if isinstance(value, (list, tuple)):
        out = [expect(v) for v in value]
        return REFUSED if any(v is REFUSED for v in out) else out
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else REFUSED
    if isinstance(value, np.generic):
        return value.item()
    return REFUSED


def encodable(value):
    """False if a str anywhere in ``value`` (keys included) is not valid UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(encodable(k) and encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(encodable(v) for v in value)
    return True


def column_slots(ts, data):
    """``{column key: float}`` the writer must put in the columns for one point."""
    slots = {"_ts": ts}

    def walk(mapping, prefix):
        for key, value in mapping.items():
            if type(value) in (bool, int, float):
                try:
                    slots[prefix + key] = float(value)
                except OverflowError:
                    slots[prefix + key] = math.inf if value > 0 else -math.inf
            elif type(value) is dict:
                walk(value, f"{prefix}{key}.")
    walk(data, "")
    return slots


class StoreMachine(RuleBasedStateMachine):
    @initialize()
    def open_store(self):
        self.root = tempfile.mkdtemp(prefix="ml_dash_fuzz_")
        self.exp = Experiment(prefix=PREFIX, dash_root=self.root)
        self.exp.run.start()
        self.committed = {}  # stream -> [(ts, data)]
        self.staged = []  # (stream, ts, data)
        self.ts = 1.0e9

    @rule(name=names, point=fields)
    def log(self, name, point):
        want = {key: expect(value) for key, value in point.items()}
        self.ts += 0.5
        stream = self.exp.metrics(name)
        if REFUSED in want.values() or "" in want:
            with pytest.raises((TypeError, ValueError)) as info:
                stream.log(_ts=self.ts, **point)
            assert repr(name)[:20] in str(info.value) or "stream" in str(info.value)
            return
        stream.log(_ts=self.ts, **point)
        self.staged.append((name, self.ts, want))

    def _commit(self, action):
        """Run ``action`` (a flush or close); the model commits what is staged.

        A point with a string that is not valid UTF-8 passes ``log()`` but is
        refused by the flush, which drops that point alone and keeps the rest.
        """
        keep = [item for item in self.staged if encodable(item[2])]
        for _ in range(len(self.staged) - len(keep)):
            with pytest.raises(TypeError, match="dropped"):
                action()
        action()
        for name, ts, data in keep:
            self.committed.setdefault(name, []).append((ts, data))
        self.staged = []

    @rule()
    def flush(self):
        self._commit(self.exp.flush)

    @rule()
    def close_and_reopen(self):
        self._commit(self.exp.run.complete)
        self.exp = Experiment(prefix=PREFIX, dash_root=self.root)
        self.exp.run.start()

    @precondition(lambda self: self.committed)
    @rule(data=st.data())
    def read_rows(self, data):
        name = data.draw(st.sampled_from(sorted(self.committed)))
        rows = self.exp.metrics(name).read(limit=10_000)["data"]
        model = self.committed[name]
        assert [row["index"] for row in rows] == list(range(len(model)))
        for row, (ts, want) in zip(rows, model):
            assert row["data"].pop("_ts") == ts
            assert same(row["data"], want), (row["data"], want)

    @precondition(lambda self: self.committed)
    @rule(data=st.data())
    def read_columns(self, data):
        name = data.draw(st.sampled_from(sorted(self.committed)))
        model = self.committed[name]
        slots = [column_slots(ts, want) for ts, want in model]
        columns = self.exp.metrics(name).columns()
        assert set(columns) == set().union(*slots)
        for key, column in columns.items():
            want = [slot.get(key, math.nan) for slot in slots]
            assert np.array_equal(column, want, equal_nan=True), (key, list(column), want)

    @invariant()
    def counts_agree(self):
        if hasattr(self, "exp"):
            for name, model in self.committed.items():
                assert len(self.exp.metrics(name)) == len(model)

    def teardown(self):
        if hasattr(self, "exp"):
            self._commit(self.exp.run.complete)
            view = load(PREFIX, dash_root=self.root)
            assert sorted(n for n in view.metrics.names() if n) == sorted(self.committed)
            view.close()
            report = ml_dash.check(PREFIX, dash_root=self.root)
            assert report.ok, report.problems
            shutil.rmtree(self.root, ignore_errors=True)


TestStore = StoreMachine.TestCase
TestStore.settings = settings.get_profile(PROFILE)


@settings(settings.get_profile(PROFILE), max_examples=settings.get_profile(PROFILE).max_examples * 4)
@given(prefix=st.one_of(any_text, st.lists(any_text, max_size=4).map("/".join)))
def test_bad_prefixes_are_refused_and_good_ones_round_trip(prefix):
    dash_root = tempfile.mkdtemp(prefix="ml_dash_prefix_")
    try:
        try:
            exp = Experiment(prefix=prefix, dash_root=dash_root)
        except ValueError as exc:
            assert "prefix" in str(exc)
            return
        assert os.path.realpath(exp.path).startswith(os.path.realpath(dash_root) + os.sep)
        exp.run.start()
        exp.metrics("t").log(x=1).flush()
        exp.run.complete()
        # A prefix with braces is a template ('0/{{' is the run '0/{'): the run is at exp.prefix.
        assert exp.prefix == prefix.strip("/") or "{" in prefix or "}" in prefix
        assert load(exp.prefix, dash_root=dash_root).metrics("t").column("x")[-1] == 1.0
    finally:
        shutil.rmtree(dash_root, ignore_errors=True)
