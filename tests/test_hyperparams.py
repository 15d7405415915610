"""Hyperparameters a framework hands a logger: whatever they hold, the call stores text, in time."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("lightning")

from ml_dash import load  # noqa: E402
from ml_dash.integrations.lightning import MLDashLogger  # noqa: E402


class Unprintable:
    def __str__(self):
        raise RuntimeError("no text for you")

    __repr__ = __str__


class StrReturnsNumber:
    def __str__(self):
        return 3  # str() raises TypeError on this


def logged_params(tmp_path, params):
    root = str(tmp_path / "dash")
    logger = MLDashLogger("alice/hp", dash_root=root)
    logger.log_hyperparams(params)
    logger.finalize("success")
    return load(logger.prefix, dash_root=root).params.get()


def test_a_dict_holding_itself_is_stored_with_the_cycle_as_text(tmp_path):
    config = {"lr": 0.1}
    config["self"] = config
    config["again"] = config  # two ways back: a depth bound alone doubled the work per level
    params = logged_params(tmp_path, {"config": config})
    assert params == {"config.lr": 0.1, "config.self": "<cycle: dict>", "config.again": "<cycle: dict>"}


def test_lists_holding_themselves_end_quickly(tmp_path):
    """In a child with a deadline: the old conversion took 2**33 steps on this."""
    script = textwrap.dedent(f"""
        from ml_dash.integrations.lightning import MLDashLogger
        from ml_dash import load
        tree = []
        tree.extend([tree, tree, tree])
        logger = MLDashLogger("alice/hp", dash_root={str(tmp_path / 'dash')!r})
        logger.log_hyperparams({{"tree": tree}})
        logger.finalize("success")
        print(load(logger.prefix, dash_root={str(tmp_path / 'dash')!r}).params.get()["tree"])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['<cycle: list>', '<cycle: list>', '<cycle: list>']"


def test_a_value_shared_twice_is_not_a_cycle(tmp_path):
    shared = {"width": 64}
    params = logged_params(tmp_path, {"encoder": shared, "decoder": shared, "pair": [shared, shared]})
    assert params["encoder.width"] == params["decoder.width"] == 64
    assert params["pair"] == [{"width": 64}, {"width": 64}]


def test_objects_that_cannot_be_printed_are_named_by_type(tmp_path):
    params = logged_params(tmp_path, {"a": Unprintable(), "b": StrReturnsNumber(), "c": {Unprintable(): 1}})
    assert params["a"] == "<Unprintable: unprintable>"
    assert params["b"] == "<StrReturnsNumber: unprintable>"
    assert params["c.<Unprintable: unprintable>"] == 1


def test_nesting_deeper_than_any_config_ends_as_text(tmp_path):
    deep = "leaf"
    for _ in range(200):
        deep = {"d": deep}
    params = logged_params(tmp_path, {"deep": deep})
    (key, value), = params.items()
    assert key.startswith("deep.d.d") and isinstance(value, str) and value.startswith("{'d'")


def test_the_run_goes_on_after_odd_hyperparams(tmp_path):
    root = str(tmp_path / "dash")
    logger = MLDashLogger("alice/hp", dash_root=root)
    cyclic = {}
    cyclic["me"] = cyclic
    logger.log_hyperparams({"cyclic": cyclic, "odd": Unprintable()})
    logger.log_hyperparams({"lr": 0.01})
    logger.log_metrics({"train/loss": 0.5}, step=0)
    logger.finalize("success")
    view = load(logger.prefix, dash_root=root)
    assert view.params.get()["lr"] == 0.01
    assert view.metrics("train").column("loss").tolist() == [0.5]
