"""exp.params: set/log, flattening, merging, conflicts, conversion, atomicity, get()."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_dash import Experiment, load


class Base:
    lr = 0.1
    _private = 1


class Args(Base):
    batch = 32
    layers = (64, 64)

    class Optim:
        beta = 0.9

    def method(self):
        return 1

    @property
    def prop(self):
        return 2

    @staticmethod
    def helper():
        return 3


def test_nested_dicts_flatten_to_any_depth_lists_kept_whole(exp):
    exp.params.set(model=dict(encoder=dict(depth=dict(n=4)), widths=[1, 2]), seed=7, name="run")
    assert exp.params.get() == {"model.encoder.depth.n": 4, "model.widths": [1, 2],
                                "name": "run", "seed": 7}
    assert exp.params.get(flatten=False) == {
        "model": {"encoder": {"depth": {"n": 4}}, "widths": [1, 2]}, "name": "run", "seed": 7}


def test_class_objects_expand_to_public_non_callable_attributes(exp):
    exp.params.set(args=Args)
    assert exp.params.get() == {"args.lr": 0.1, "args.batch": 32, "args.layers": [64, 64],
                                "args.Optim.beta": 0.9}


def test_sets_merge_later_wins_and_log_is_an_alias(exp):
    exp.params.set(a=1, b=dict(c=2))
    exp.params.log(b=dict(c=3, d=4))
    assert exp.params.get() == {"a": 1, "b.c": 3, "b.d": 4}


def test_conflicting_keys_are_replaced_both_ways(exp):
    exp.params.set(a=dict(b=1, c=2), x=1)
    exp.params.set(a=5)
    assert exp.params.get() == {"a": 5, "x": 1}
    exp.params.set(x=dict(y=2))
    assert exp.params.get() == {"a": 5, "x.y": 2}
    exp.run.complete()
    with load(exp.prefix, dash_root=exp.dash_root) as view:
        assert view.params.get() == {"a": 5, "x.y": 2}


def test_numpy_values_are_converted(exp):
    exp.params.set(lr=np.float32(0.5), n=np.int64(3), flag=np.bool_(True), arr=np.arange(3),
                   grid=np.eye(2), zero_d=np.array(1.5))
    params = exp.params.get()
    assert params == {"lr": 0.5, "n": 3, "flag": True, "arr": [0, 1, 2],
                      "grid": [[1.0, 0.0], [0.0, 1.0]], "zero_d": 1.5}
    assert type(params["n"]) is int and type(params["flag"]) is bool


def test_failed_set_raises_before_anything_is_written(exp):
    exp.params.set(lr=0.1, model=dict(depth=2))
    with pytest.raises(TypeError, match=r"'model\.bad'.*object"):
        exp.params.set(lr=0.2, model=dict(depth=3, bad=object()), extra=1)
    with pytest.raises(TypeError, match="'f'.*function"):
        exp.params.set(f=lambda: 1)
    assert exp.params.get() == {"lr": 0.1, "model.depth": 2}
    exp.flush()
    exp.run.complete()
    with load(exp.prefix, dash_root=exp.dash_root) as view:
        assert view.params.get() == {"lr": 0.1, "model.depth": 2}


def test_int_keys_become_their_digits_other_keys_are_refused(exp):
    # As the reference package (and JSON) do: a per-class weight map is a common config.
    exp.params.set(weights={0: 0.5, np.int64(1): 2.0})
    assert exp.params.get() == {"weights.0": 0.5, "weights.1": 2.0}
    for bad, kind in (({1.5: 2}, "float"), ({None: 2}, "NoneType"), ({(1, 2): 3}, "tuple"),
                      ({True: 1}, "bool")):
        with pytest.raises(TypeError, match=rf"must be strings \(or ints\), got .* \({kind}\) "
                                            r"under 'model'; nothing of this set"):
            exp.params.set(model=bad, other=1)
    for bad in ({"model": {"": 1}}, {"model": {"": {}}}, {"": {}}, {"model": {"a": {"": {"b": 1}}}}):
        with pytest.raises(TypeError, match="keys must be non-empty strings, got ''.*nothing of"):
            exp.params.set(**bad)  # an empty dict below the empty key too: no leaf, still refused
    with pytest.raises(TypeError, match="got '' under 'model.a'"):
        exp.params.set(model={"a": {"": 1}})
    assert exp.params.get() == {"weights.0": 0.5, "weights.1": 2.0}


def test_params_are_committed_at_once_and_visible_to_a_view(exp):
    exp.params.set(lr=0.1)
    with load(exp.prefix, dash_root=exp.dash_root) as view:
        assert view.params.get() == {"lr": 0.1}
        assert view.params.get(flatten=False) == {"lr": 0.1}


def test_reopening_merges_with_stored_params(dash_root):
    with Experiment(prefix="alice/proj/p", dash_root=dash_root).run as exp:
        exp.params.set(a=1, b=dict(c=2))
    with Experiment(prefix="alice/proj/p", dash_root=dash_root).run as exp:
        assert exp.params.get() == {"a": 1, "b.c": 2}
        exp.params.set(b=3)
    assert exp.params.get() == {"a": 1, "b": 3}  # readable after close
    with load("alice/proj/p", dash_root=dash_root) as view:
        assert view.params.get() == {"a": 1, "b": 3}


def test_params_before_start_raise(dash_root):
    exp = Experiment(prefix="alice/proj/never", dash_root=dash_root)
    with pytest.raises(RuntimeError, match="not started"):
        exp.params.set(a=1)
    exp.run.start()
    params = exp.params
    exp.run.complete()
    with pytest.raises(RuntimeError, match="closed"):
        params.set(a=2)


keys = st.text(alphabet=st.characters(blacklist_characters=".", blacklist_categories=("Cs",)),
               min_size=1, max_size=8)
scalars = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.booleans(),
                    st.text(max_size=10), st.none(), st.lists(st.integers(), max_size=3))
trees = st.recursive(scalars, lambda inner: st.dictionaries(keys, inner, min_size=1, max_size=4),
                     max_leaves=12)


@pytest.fixture(scope="module")
def params_exp(tmp_path_factory):
    experiment = Experiment(prefix="alice/proj/hyp", dash_root=str(tmp_path_factory.mktemp("dash")))
    experiment.run.start()
    yield experiment
    experiment.run.complete()


@settings(max_examples=100, deadline=None)
@given(tree=st.dictionaries(keys, trees, min_size=1, max_size=4))
def test_nested_params_round_trip(params_exp, tree):
    case = f"case{len(params_exp.params.get())}"  # a new top-level key per example
    params_exp.params.set(**{case: tree})
    assert params_exp.params.get(flatten=False)[case] == tree
    with load(params_exp.prefix, dash_root=params_exp.dash_root) as view:
        assert view.params.get(flatten=False)[case] == tree


# -- the flatten/unflatten helpers (ParametersBuilder.flatten_dict / unflatten_dict) -------


def test_the_reference_packages_name_is_the_same_class():
    from ml_dash import ParametersBuilder as from_package
    from ml_dash.params import ParametersBuilder, Params

    assert ParametersBuilder is Params is from_package


def test_set_and_log_return_the_params_builder_for_chaining(exp):
    from ml_dash.params import ParametersBuilder

    result = exp.params.log(a=1).set(b=2)
    assert isinstance(result, ParametersBuilder) and result is exp.params
    assert exp.params.get() == {"a": 1, "b": 2}


def test_flatten_dict_with_separators_and_a_parent_key():
    from ml_dash.params import ParametersBuilder as P

    config = {"model": {"enc": {"depth": 4}, "widths": [64, 64]}, "seed": 1, "note": None}
    assert P.flatten_dict(config) == {"model.enc.depth": 4, "model.widths": [64, 64], "seed": 1,
                                      "note": None}
    assert P.flatten_dict(config, sep="/") == {"model/enc/depth": 4, "model/widths": [64, 64],
                                               "seed": 1, "note": None}
    assert P.flatten_dict({"b": {"c": 1}}, parent_key="a", sep="__") == {"a__b__c": 1}
    assert list(P.flatten_dict({"z": 1, "a": {"y": 2, "b": 3}, "m": 4})) == ["z", "a.y", "a.b", "m"]
    assert P.flatten_dict({"a": {}, "b": 1}) == {"b": 1}  # an empty dict has no leaf
    value = object()
    assert P.flatten_dict({"a": {"o": value}})["a.o"] is value  # values as they are: no checks
    assert P.unflatten_dict({"model/enc/depth": 4, "seed": 1}, sep="/") == {
        "model": {"enc": {"depth": 4}}, "seed": 1}
    assert P.unflatten_dict({"a.b": 1}, sep="/") == {"a.b": 1}


def test_flatten_dict_int_keys_become_digits_other_keys_are_refused():
    from ml_dash.params import ParametersBuilder as P

    assert P.flatten_dict({"w": {0: 0.5, np.int32(1): 2.0}}) == {"w.0": 0.5, "w.1": 2.0}
    for key, kind in ((1.5, "float"), (None, "NoneType"), ((1,), "tuple"), (False, "bool")):
        with pytest.raises(TypeError, match=rf"strings \(or ints\), got .* \({kind}\) under 'a.b'"):
            P.flatten_dict({"a": {"b": {key: 1}}})
    with pytest.raises(TypeError, match="flat dict must be strings, got 1 \\(int\\)"):
        P.unflatten_dict({1: 2})


def test_flatten_dict_refuses_bad_arguments_naming_them():
    from ml_dash.params import ParametersBuilder as P

    for call, error, words in ((lambda: P.flatten_dict([1]), TypeError, "got list"),
                               (lambda: P.unflatten_dict("a.b"), TypeError, "got str"),
                               (lambda: P.flatten_dict({}, sep=""), ValueError, "non-empty"),
                               (lambda: P.unflatten_dict({}, sep=""), ValueError, "non-empty"),
                               (lambda: P.flatten_dict({}, sep=1), TypeError, "sep must be a str"),
                               (lambda: P.flatten_dict({}, parent_key=2), TypeError, "parent_key")):
        with pytest.raises(error, match=words):
            call()


def test_a_dict_inside_itself_is_refused_naming_its_path():
    from ml_dash.params import ParametersBuilder as P

    config = {"a": 1, "model": {}}
    config["model"]["loop"] = config
    with pytest.raises(ValueError, match="'model/loop' contains itself"):
        P.flatten_dict(config, sep="/")
    shared = {"x": 1}  # the same dict twice, side by side, is no loop
    assert P.flatten_dict({"a": shared, "b": shared}) == {"a.x": 1, "b.x": 1}


def test_deep_nesting_flattens_without_recursion():
    from ml_dash.params import ParametersBuilder as P

    deep = leaf = {}
    for _ in range(20_000):  # far past Python's recursion limit
        leaf["k"] = {}
        leaf = leaf["k"]
    leaf["v"] = 1
    flat = P.flatten_dict(deep)
    assert flat == {"k." * 20_000 + "v": 1}
    node = P.unflatten_dict(flat)
    for _ in range(20_000):
        node = node["k"]
    assert node == {"v": 1}


def test_unflatten_dict_refuses_a_key_that_is_a_value_and_a_parent_in_either_order():
    from ml_dash.params import ParametersBuilder as P

    for flat in ({"a": 1, "a.b": 2}, {"a.b": 2, "a": 1}):
        with pytest.raises(ValueError, match="'a' holds a value and is also the parent of 'a.b'"):
            P.unflatten_dict(flat)
    with pytest.raises(ValueError, match="'x.y' holds a value and is also the parent of 'x.y.z'"):
        P.unflatten_dict({"x.y.z": 1, "x.w": 2, "x.y": 3})
    value = {"kept": 1}  # a dict value is a value: never merged into, never changed
    with pytest.raises(ValueError, match="'a' holds a value"):
        P.unflatten_dict({"a": value, "a.b": 2})
    assert value == {"kept": 1}
    assert P.unflatten_dict({"a": value})["a"] is value


separators = st.one_of(st.sampled_from([".", "/", "__", "::", "→", " "]), st.text(min_size=1, max_size=3))
json_leaves = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                        st.text(max_size=5), st.lists(st.integers(), max_size=3))


@st.composite
def trees_and_separator(draw):
    """A nested dict (no empty dicts) whose keys hold no character of the separator, and
    the separator.  (Keys ':' and '' joined by '::' give ':::', which splits as '' and ':'.)"""
    sep = draw(separators)
    key = st.text(max_size=6).filter(lambda k: not set(k) & set(sep))
    tree = draw(st.recursive(json_leaves,
                             lambda inner: st.dictionaries(key, inner, min_size=1, max_size=4),
                             max_leaves=15).filter(lambda t: isinstance(t, dict)))
    return tree, sep


def expected_leaves(tree, path=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from expected_leaves(value, (*path, key))
        else:
            yield (*path, key), value


@settings(max_examples=300, deadline=None)
@given(case=trees_and_separator())
def test_flatten_unflatten_round_trip_with_any_separator(case):
    from ml_dash.params import ParametersBuilder as P

    tree, sep = case
    flat = P.flatten_dict(tree, sep=sep)
    assert list(flat.items()) == [(sep.join(path), value) for path, value in expected_leaves(tree)]
    assert P.unflatten_dict(flat, sep=sep) == tree
    assert P.flatten_dict(P.unflatten_dict(flat, sep=sep), sep=sep) == flat
    assert P.flatten_dict(tree, parent_key="top", sep=sep) == {
        "top" + sep + key: value for key, value in flat.items()}


def naive_merge(stored, flat):
    """The conflict rule written out plainly: a key replaces its ancestors and descendants."""
    merged = dict(stored)
    for key, value in flat.items():
        parts = key.split(".")
        ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
        for other in [k for k in merged if k in ancestors or k.startswith(key + ".")]:
            del merged[other]
        merged[key] = value
    return merged


conflicting_keys = st.lists(st.sampled_from(["a", "b", "a.b", "a.c", "a.b.c", "a.b.d", "a.bc",
                                             "ab", "a..b", "a."]), min_size=1, max_size=6)


@settings(max_examples=100, deadline=None)
@given(sets=st.lists(conflicting_keys, min_size=1, max_size=4))
def test_sets_merge_by_the_conflict_rule(params_exp, sets):
    case = f"merge{len(params_exp.params.get())}"  # a fresh top-level key per example
    model = {}
    for i, keys in enumerate(sets):
        flat = {f"{case}.{key}": i * 10 + j for j, key in enumerate(keys)}
        params_exp.params.set(**flat)
        model = naive_merge(model, flat)
        mine = {k: v for k, v in params_exp.params.get().items() if k.startswith(case + ".")}
        assert mine == dict(sorted(model.items()))


def test_a_large_set_merges_in_linear_time(exp):
    import time

    many = {f"layer{i}": {"w": i, "b": -i} for i in range(10_000)}
    started = time.perf_counter()
    exp.params.set(model=many, **{f"p{i}": i for i in range(10_000)})
    exp.params.set(model={"layer5": 0})  # replaces two stored keys among 30,000
    elapsed = time.perf_counter() - started
    params = exp.params.get()
    assert len(params) == 30_000 - 1 and params["model.layer5"] == 0
    assert "model.layer5.w" not in params and params["model.layer6.w"] == 6
    assert elapsed < 5, elapsed  # scanning every stored key for each new one: about 30 s


def test_a_set_with_nothing_to_store_commits_nothing(exp):
    exp.params.set(a=1)
    commits = exp._session.commits
    assert exp.params.set() is exp.params.set(model={}, empty={"inner": {}})
    assert exp._session.commits == commits and exp.params.get() == {"a": 1}


def test_str_subclass_keys_are_their_characters(exp):
    import enum

    class Kind(str, enum.Enum):
        DENSE = "dense"

    exp.params.set(model={Kind.DENSE: 1, np.str_("sparse"): 2})
    assert exp.params.get() == {"model.dense": 1, "model.sparse": 2}
    assert all(type(key) is str for key in exp.params.get())
