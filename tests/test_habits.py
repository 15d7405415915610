"""Habits users bring from other trackers: log(dict), config objects as params."""

import argparse
import dataclasses
import enum
import pathlib

import pytest

from ml_dash import load


def test_log_takes_a_positional_dict_like_wandb(exp, dash_root):
    exp.metrics.log({"loss": 0.3, "train": {"acc": 0.5}}, step=1)
    exp.metrics("eval").log({"loss": 0.2, "_ts": 5.0})
    exp.metrics("eval").log(loss=0.1)  # keywords unchanged
    exp.flush()
    view = load("alice/proj/exp", dash_root=dash_root)
    root = view.metrics.read()["data"][0]["data"]
    assert root["loss"] == 0.3 and root["step"] == 1
    train = view.metrics("train").read()["data"][0]["data"]
    assert train["acc"] == 0.5 and train["step"] == 1 and train["_ts"] == root["_ts"]
    evals = view.metrics("eval").read()["data"]
    assert evals[0]["data"] == {"loss": 0.2, "_ts": 5.0}
    assert evals[1]["data"]["loss"] == 0.1


@pytest.mark.parametrize("call, words", [
    (lambda m: m.log({1: 2.0}), "field names must be strings, got int 1"),
    (lambda m: m.log({"a": 1}, a=2), "field 'a' given both"),
    (lambda m: m.log({"_flush": True}), "'_flush' is log()'s own flag"),
])
def test_log_dict_refuses_what_it_cannot_mean_and_stages_nothing(exp, call, words):
    with pytest.raises(TypeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        call(exp.metrics)
    exp.flush()
    assert len(exp.metrics) == 0


class Optimizer(enum.Enum):
    ADAM = "adam-optimizer"


@dataclasses.dataclass
class Model:
    lr: float = 0.1
    checkpoint: pathlib.Path = pathlib.Path("runs/ckpt")
    optimizer: Optimizer = Optimizer.ADAM
    layers: tuple = (64, 64)


def test_params_take_namespace_dataclass_paths_and_enums(exp):
    args = argparse.Namespace(seed=1, data=pathlib.Path("data/train"))
    exp.params.set(args, model=Model())
    exp.params.set(config=argparse.Namespace(batch=32))
    assert exp.params.get() == {
        "seed": 1, "data": "data/train", "config.batch": 32,
        "model.lr": 0.1, "model.checkpoint": "runs/ckpt", "model.optimizer": "ADAM",
        "model.layers": [64, 64]}


def test_params_take_torch_device_and_dtype_as_text(exp):
    torch = pytest.importorskip("torch")
    exp.params.set(device=torch.device("cpu"), dtype=torch.float32)
    assert exp.params.get() == {"device": "cpu", "dtype": "torch.float32"}


def test_params_refuse_a_positional_that_is_no_config_and_store_nothing(exp):
    with pytest.raises(TypeError, match="one positional config.*got int"):
        exp.params.set(3)
    with pytest.raises(TypeError, match="'lr' is given both"):
        exp.params.set(Model(), lr=2)
    assert exp.params.get() == {}
