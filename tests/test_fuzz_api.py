"""Fuzzing the public API: no input, however bad, makes a later valid call fail.

A hypothesis state machine drives one run through random calls of every
kind a training script makes: streams created with random descriptions,
tags and metadata; points with random values, keys, nesting depths and
``_ts``; routed dicts; ``params.set()`` with random keys (long ones,
non-UTF-8 ones) and nesting; log records; saved files at random paths.  A
plain model says for each call whether it must be refused (``TypeError`` or
``ValueError`` at the call) and, if not, what the store must give back.
Every rule ends with a flush, which must succeed: a refused call staged
nothing, so no later call can fail because of it.  At the end the run is
completed and read back through ``load()``, ``list_experiments()`` and
``check()``, and everything must equal the model exactly.

Lone surrogates in metric values and keys are left out here: ``log()``
passes them for speed and the flush refuses that point alone
(``tests/test_stateful.py`` covers that); everywhere else they are refused
at the call and are fuzzed.

``ML_DASH_HYPOTHESIS=long`` runs many more examples.
"""

import datetime
import os
import shutil
import tempfile

import numpy as np
import pytest
from exact import same
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

import ml_dash
from ml_dash import Experiment, load

settings.register_profile("api-ci", max_examples=100, stateful_step_count=12, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("api-long", max_examples=2000, stateful_step_count=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = "api-long" if os.environ.get("ML_DASH_HYPOTHESIS") == "long" else "api-ci"

PREFIX = "fuzz/api/run"
REFUSED = object()
MAX_DEPTH = 100  # documented: lists and dicts nest at most 100 levels
MAX_KEY = 511  # documented: params keys and file paths, in UTF-8 bytes


class SelfContaining:
    """A marker the rules turn into a list that contains itself."""


def utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def nested(levels, leaf=1, key=None):
    value = leaf
    for _ in range(levels):
        value = [value] if key is None else {key: value}
    return value


def materialize(value):
    """Strategies cannot build self-containing values: do it here."""
    if isinstance(value, SelfContaining):
        loop = [1]
        loop.append(loop)
        return loop
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [materialize(v) for v in value]
    return value


# -- strategies -----------------------------------------------------------------------

any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)  # surrogates too
good_text = st.text(max_size=8)  # no surrogates
long_text = st.builds(lambda n, c: c * n, st.integers(100, 600), st.sampled_from(["k", "é", "€"]))
dict_keys = st.one_of(st.sampled_from(["loss", "a.b", "x", "", "_ts"]), good_text,
                      st.integers(-2, 2), st.none())
strict_keys = st.one_of(dict_keys, any_text)
stream_names = st.one_of(st.sampled_from(["train", "eval", "a.b", "é/ü", " "]),
                         st.text(min_size=1, max_size=20), any_text.filter(bool))


def scalars(text):
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(-(10 ** 30), 10 ** 30),
        st.floats(allow_nan=True, allow_infinity=True), st.just(-0.0), text,
        st.builds(np.float32, st.floats(width=32)), st.builds(np.int64, st.integers(-2 ** 63, 2 ** 63 - 1)),
        st.builds(np.bool_, st.booleans()), st.builds(np.array, st.floats()))


bad_values = st.one_of(
    st.just(b"bytes"), st.just({1, 2}), st.builds(object), st.builds(np.zeros, st.integers(2, 3)),
    st.just(datetime.date(2024, 1, 1)), st.builds(SelfContaining),
    st.builds(nested, st.integers(MAX_DEPTH - 2, MAX_DEPTH + 3)),
    st.builds(nested, st.integers(MAX_DEPTH - 2, MAX_DEPTH + 3), st.just(0), st.just("d")))


def values(text, keys):
    tree = st.recursive(scalars(text), lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner, inner),
        st.dictionaries(keys, inner, max_size=3)), max_leaves=6)
    return st.one_of(tree, tree, tree, bad_values)


metric_values = values(good_text, dict_keys)
strict_values = values(any_text, strict_keys)
not_dicts = st.one_of(scalars(good_text), st.lists(metric_values, max_size=2),
                      st.just(b"bytes"), st.builds(SelfContaining), st.builds(nested, st.integers(98, 103)))
field_names = st.one_of(st.sampled_from(["loss", "acc", "a.b", ""]), good_text).filter(
    lambda k: k not in ("_ts", "_flush"))
metric_fields = st.dictionaries(field_names, metric_values, max_size=4)
metadata = st.one_of(st.none(), st.dictionaries(strict_keys, strict_values, max_size=3),
                     st.just(["not", "a", "dict"]), st.just("text"))
descriptions = st.one_of(st.none(), any_text, st.just(3.5), st.just(b"bytes"))
tags = st.one_of(st.none(), st.lists(any_text, max_size=3), st.tuples(good_text),
                 st.just("abc"), st.just([1, 2]))
timestamps = st.one_of(st.floats(), st.integers(-(2 ** 2000), 2 ** 2000), st.just("12"),
                       st.booleans(), st.builds(np.float64, st.floats()))
param_keys = st.one_of(st.sampled_from(["lr", "model", "model.width", "a.b", ""]), any_text,
                       long_text, st.integers(0, 2))
param_trees = st.recursive(
    st.one_of(strict_values, st.builds(lambda n: nested(n, key="m"), st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2))),
    lambda inner: st.dictionaries(param_keys, inner, max_size=3), max_leaves=5)
params = st.dictionaries(st.one_of(st.sampled_from(["lr", "model", "model.width", ""]), any_text,
                                   long_text), param_trees, max_size=3)
path_parts = st.one_of(st.sampled_from(["a", "b.txt", "c", ".", "..", "x\\y", "n\0ul"]),
                       good_text, any_text, long_text)
file_paths = st.lists(path_parts, min_size=0, max_size=3).map("/".join)


# -- the model ----------------------------------------------------------------------------


def expect(value, depth=0, strict=False):
    """What the store gives back for a value, or REFUSED; ``strict``: text must be UTF-8."""
    if value is None or type(value) in (bool, int, float):
        return value
    if type(value) is str:
        return REFUSED if strict and not utf8(value) else value
    if isinstance(value, (dict, list, tuple)):
        if depth >= MAX_DEPTH:
            return REFUSED
        if isinstance(value, dict):
            if not all(isinstance(k, str) and k and (utf8(k) or not strict) for k in value):
                return REFUSED
            out = {k: expect(v, depth + 1, strict) for k, v in value.items()}
            return REFUSED if any(v is REFUSED for v in out.values()) else out
        out = [expect(v, depth + 1, strict) for v in value]
        return REFUSED if any(v is REFUSED for v in out) else out
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else REFUSED
    if isinstance(value, np.generic):
        return value.item()
    return REFUSED


def expect_info(description, tag_list, meta):
    """``(description, tags, metadata)`` as stored, or REFUSED."""
    if description is not None and (not isinstance(description, str) or not utf8(description)):
        return REFUSED
    if tag_list is not None:
        if isinstance(tag_list, str) or not all(isinstance(t, str) and utf8(t) for t in tag_list):
            return REFUSED
        tag_list = list(tag_list)
    if meta is not None:
        if not isinstance(meta, dict):
            return REFUSED
        if not all(isinstance(k, str) and k and utf8(k) for k in meta):
            return REFUSED
        meta = {k: expect(v, 1, strict=True) for k, v in meta.items()}
        if any(v is REFUSED for v in meta.values()):
            return REFUSED
    return description, tag_list, meta


def expect_params(tree, prefix="", depth=0):
    """The flat params a set() stores, or REFUSED."""
    if depth >= MAX_DEPTH:
        return REFUSED
    flat = {}
    for key, value in tree.items():
        if type(key) is int and depth:  # a nested int key is stored as its digits
            key = str(key)
        if not isinstance(key, str) or not key:
            return REFUSED
        name = prefix + key
        if isinstance(value, dict):
            sub = expect_params(value, name + ".", depth + 1)
            if sub is REFUSED:
                return REFUSED
            flat.update(sub)
        else:
            if isinstance(value, np.ndarray) and value.ndim:
                value = value.tolist()
            stored = expect(value, depth, strict=True)
            if stored is REFUSED:
                return REFUSED
            flat[name] = stored
    if any(not utf8(name) or len(name.encode("utf-8")) > MAX_KEY for name in flat):
        return REFUSED
    return flat


def merge_params(stored, flat):
    merged = dict(stored)
    for key, value in flat.items():
        below = key + "."
        parts = key.split(".")
        ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
        for other in [k for k in merged if k in ancestors or k.startswith(below)]:
            del merged[other]
        merged[key] = value
    return merged


def expect_path(path):
    """The stored path of ``files.save_text(to=path)``, or REFUSED."""
    parts = [part for part in path.split("/") if part]
    if "\\" in path or "\0" in path or any(part in (".", "..") for part in parts) or not parts:
        return REFUSED
    stored = "/".join(parts)
    if not utf8(stored) or len(stored.encode("utf-8")) > MAX_KEY:
        return REFUSED
    return stored


# -- the machine -----------------------------------------------------------------------------


class ApiMachine(RuleBasedStateMachine):
    @initialize(description=descriptions, tag_list=tags, meta=metadata)
    def open_run(self, description, tag_list, meta):
        self.root = tempfile.mkdtemp(prefix="ml_dash_api_fuzz_")
        meta = materialize(meta)
        want = expect_info(description, tag_list, meta)
        options = dict(prefix=PREFIX, dash_root=self.root)
        if want is REFUSED:
            with pytest.raises(TypeError):
                Experiment(**options, description=description, tags=tag_list, metadata=meta)
            want = (None, None, None)
        else:
            options.update(description=description, tags=tag_list, metadata=meta)
        self.run_info = want
        self.exp = Experiment(**options)
        self.exp.run.start()
        self.streams = {}  # name -> (description, tags, metadata)
        self.points = {}  # name ("" for the root) -> [(ts, data)]
        self.params = {}
        self.logs = []  # (message, metadata)
        self.files = {}  # stored path -> (text, metadata)
        self.ts = 1.0e9

    def _next_ts(self):
        self.ts += 0.5
        return self.ts

    def _flush(self):
        self.exp.flush()  # after any call, refused or not: must never fail

    @rule(name=stream_names, description=descriptions, tag_list=tags, meta=metadata)
    def make_stream(self, name, description, tag_list, meta):
        meta = materialize(meta)
        want = expect_info(description, tag_list, meta)
        if name in self.streams or want is not REFUSED:
            self.exp.metrics(name, description=description, tags=tag_list, metadata=meta)
            if name not in self.streams:
                self.streams[name] = (want[0], want[1] or [], want[2])
        else:
            with pytest.raises(TypeError) as refused:
                self.exp.metrics(name, description=description, tags=tag_list, metadata=meta)
            assert repr(name) in str(refused.value)
        self._flush()

    def _stream(self, name):
        self.streams.setdefault(name, (None, [], None))
        return self.exp.metrics(name)

    @rule(name=stream_names, fields=metric_fields)
    def log(self, name, fields):
        fields = materialize(fields)
        want = {key: expect(value) for key, value in fields.items()}
        ts = self._next_ts()
        if REFUSED in want.values() or "" in want:
            with pytest.raises(TypeError) as refused:
                self._stream(name).log(_ts=ts, **fields)
            assert repr(name) in str(refused.value)
        else:
            self._stream(name).log(_ts=ts, **fields)
            self.points.setdefault(name, []).append((ts, want))
        self._flush()

    @rule(scalars=st.dictionaries(field_names, not_dicts, max_size=2),
          routed=st.dictionaries(stream_names.filter(lambda n: n not in ("_ts", "_flush")),
                                 st.dictionaries(dict_keys, metric_values, max_size=3),
                                 min_size=1, max_size=2))
    def route(self, scalars, routed):
        scalars, routed = materialize(scalars), materialize(routed)
        routed = {name: value for name, value in routed.items() if name not in scalars}
        fields = {**scalars, **routed}
        want_scalars = {key: expect(value) for key, value in scalars.items()}
        refused = REFUSED in want_scalars.values() or "" in want_scalars
        want_routed = {}
        for name, value in routed.items():
            if not all(isinstance(k, str) and k for k in value) or "_ts" in value:
                refused = True
                continue
            want = {**want_scalars, **{k: expect(v) for k, v in value.items()}}
            refused = refused or REFUSED in want.values()
            want_routed[name] = want
        ts = self._next_ts()
        if refused:
            with pytest.raises(TypeError):
                self.exp.metrics.log(_ts=ts, **fields)
        else:
            self.exp.metrics.log(_ts=ts, **fields)
            if scalars or not routed:  # no dict left to route: a plain point of the root
                self.points.setdefault("", []).append((ts, want_scalars))
            for name, want in want_routed.items():
                self.streams.setdefault(name, (None, [], None))
                self.points.setdefault(name, []).append((ts, want))
        self._flush()

    @rule(ts=timestamps)
    def log_at(self, ts):
        if type(ts) is not bool and isinstance(ts, (int, float)) and ts == -1:
            return  # the last time used: covered by tests/test_metrics.py
        try:
            finite = type(ts) is not bool and isinstance(ts, (int, float)) and \
                -62135596800 <= float(ts) < 253402300800  # years 1 to 9999, as documented
        except OverflowError:
            finite = False
        if finite:
            self._stream("timed").log(_ts=ts, x=1)
            self.points.setdefault("timed", []).append((float(ts), {"x": 1}))
        else:
            with pytest.raises((TypeError, ValueError), match="_ts"):
                self._stream("timed").log(_ts=ts, x=1)
        self._flush()

    @rule(tree=params)
    def set_params(self, tree):
        tree = materialize(tree)
        flat = expect_params(tree)
        if flat is REFUSED:
            with pytest.raises((TypeError, ValueError)):
                self.exp.params.set(**tree)
        else:
            self.exp.params.set(**tree)
            self.params = merge_params(self.params, flat)
        assert list(self.exp.params.get()) == sorted(self.params)  # live equals stored
        self._flush()

    @rule(message=st.one_of(any_text, st.integers()), meta=metadata)
    def log_text(self, message, meta):
        meta = materialize(meta)
        text = str(message)
        want = expect_info(None, None, meta) if isinstance(meta, dict) or meta is None else REFUSED
        if want is REFUSED or not utf8(text):
            with pytest.raises(TypeError):
                self.exp.log(text, metadata=meta)
        else:
            self.exp.log(text, metadata=meta)
            self.logs.append((text, want[2] or {}))
        self._flush()

    @rule(path=file_paths, text=good_text, meta=metadata)
    def save_file(self, path, text, meta):
        meta = materialize(meta)
        stored = expect_path(path)
        want = expect_info(None, None, meta)
        if stored is not REFUSED and any(  # stored paths form a tree: no file under a file
                other.startswith(stored + "/") or stored.startswith(other + "/") for other in self.files):
            stored = REFUSED
        if stored is REFUSED or want is REFUSED:
            with pytest.raises((TypeError, ValueError)):
                self.exp.files.save_text(text, to=path, metadata=meta)
        else:
            self.exp.files.save_text(text, to=path, metadata=meta)
            self.files[stored] = (text, want[2])
        self._flush()

    @rule()
    def reopen(self):
        self.exp.run.complete()
        self.exp.run.start()

    def teardown(self):
        if not hasattr(self, "exp"):
            return
        try:
            self.exp.run.complete()
            self._compare()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _compare(self):
        with load(PREFIX, dash_root=self.root) as view:
            assert (view.description, view.tags, view.metadata) == (
                self.run_info[0], self.run_info[1] or [], self.run_info[2])
            assert view.status == "COMPLETED"
            for name, points in self.points.items():
                stream = view.metrics(name or None)
                rows = stream.read(limit=100_000)["data"]
                assert len(rows) == len(points)
                for row, (ts, want) in zip(rows, points):
                    assert row["data"].pop("_ts") == ts
                    assert same(row["data"], want), (name, row["data"], want)
                if name:
                    stats = stream.stats()
                    info = (stats["description"], stats["tags"], stats["metadata"])
                    assert same(list(info), list(self.streams[name])), (name, info)
            assert sorted(n or "" for n in view.metrics.names()) == sorted(self.points)
            stored = view.params.get()
            assert stored.keys() == self.params.keys()
            assert all(same(stored[k], self.params[k]) for k in stored), (stored, self.params)
            logs = view.logs.read(limit=100_000)["data"]
            assert same([[r["message"], r["metadata"]] for r in logs], [list(x) for x in self.logs])
            records = {"/".join(p for p in (r["path"].strip("/"), r["filename"]) if p): r
                       for r in view.files.list()}
            assert records.keys() == self.files.keys()
            for path, (text, meta) in self.files.items():
                assert same(records[path]["metadata"], meta)
                assert view.files(path).read_text() == text
        listed = ml_dash.list_experiments(dash_root=self.root)
        assert [run["prefix"] for run in listed] == [PREFIX]
        report = ml_dash.check(PREFIX, dash_root=self.root)
        assert report.ok, report.problems


TestApi = ApiMachine.TestCase
TestApi.settings = settings.get_profile(PROFILE)
