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
    with pytest.raises(TypeError, match="keys must be non-empty strings, got 'model.'"):
        exp.params.set(model={"": 1})
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
