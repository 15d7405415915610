"""Habits users bring from other trackers: log(dict), config objects as params."""

import argparse
import dataclasses
import enum
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_dash import load
from ml_dash.config_values import plain


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


def _python(code, cwd, env_root):
    env = dict(os.environ, ML_DASH_ROOT=env_root)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_ml_dash_root_is_the_default_everywhere(tmp_path):
    root = str(tmp_path / "project" / ".dash")
    notebook = tmp_path / "project" / "notebooks"
    notebook.mkdir(parents=True)
    done = _python(
        "import ml_dash\n"
        "with ml_dash.Experiment(prefix='alice/proj/lr-0.1').run as exp:\n"
        "    exp.metrics.log(loss=1.0)\n"
        "print(len(ml_dash.load('alice/proj/lr-0.1').metrics))\n"
        "print([r['prefix'] for r in ml_dash.list_experiments()])\n"
        "try:\n"
        "    ml_dash.load('alice/proj/lr-01')\n"
        "except FileNotFoundError as exc:\n"
        "    print(exc)\n", cwd=notebook, env_root=root)
    assert done.returncode == 0, done.stderr
    count, listed, missing = done.stdout.splitlines()
    assert count == "1" and listed == "['alice/proj/lr-0.1']"
    assert os.path.exists(os.path.join(root, "alice", "proj", "lr-0.1"))
    assert not (notebook / ".dash").exists()
    assert repr(root) in missing and "did you mean alice/proj/lr-0.1?" in missing
    cli = subprocess.run([sys.executable, "-m", "ml_dash", "ls"], cwd=notebook,
                         env=dict(os.environ, ML_DASH_ROOT=root), capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0 and "alice/proj/lr-0.1" in cli.stdout, cli.stderr
    given = _python("import ml_dash; print(ml_dash.list_experiments('elsewhere'))", cwd=notebook,
                    env_root=root)
    assert given.stdout.strip() == "[]"  # a dash_root given wins over the variable


def test_not_found_says_the_absolute_folder_searched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ML_DASH_ROOT", raising=False)
    with pytest.raises(FileNotFoundError) as caught:
        load("alice/proj/none")
    assert repr(str(tmp_path / ".dash")) in str(caught.value)
    assert "does not exist" in str(caught.value) and "ML_DASH_ROOT" in str(caught.value)


def test_log_dict_with_routed_keywords(exp):
    exp.metrics.log({"epoch": 2}, train={"loss": 0.5})
    exp.flush()
    assert exp.metrics("train").read()["data"][0]["data"]["epoch"] == 2
    assert exp.metrics.read()["data"][0]["data"]["epoch"] == 2


def test_serve_takes_ml_dash_root(tmp_path):
    pytest.importorskip("uvicorn")
    root = str(tmp_path / ".dash")
    done = _python("import ml_dash\nwith ml_dash.Experiment(prefix='alice/proj/exp').run as exp:\n"
                   "    exp.metrics.log(loss=1.0)\n", cwd=tmp_path, env_root=root)
    assert done.returncode == 0, done.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = subprocess.Popen([sys.executable, "-m", "ml_dash", "serve", "--port", str(port)],
                              cwd=elsewhere, env=dict(os.environ, ML_DASH_ROOT=root),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=5) as answer:
                    runs = json.load(answer)["runs"]
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None
                time.sleep(0.2)
        assert [run["prefix"] for run in runs] == ["alice/proj/exp"]
    finally:
        server.terminate()
        server.wait(timeout=10)


_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(min_size=1, max_size=5), inner, max_size=3), max_leaves=12)


def _as_objects(value, wrap):
    """``value`` with every dict turned into a Namespace (wrap 0) or a plain dict (wrap 1)."""
    if isinstance(value, dict):
        inner = {key: _as_objects(item, wrap) for key, item in value.items()}
        return argparse.Namespace(**inner) if wrap == 0 else inner
    if isinstance(value, list):
        return [_as_objects(item, wrap) for item in value]
    return value


@given(_values)
def test_config_conversion_keeps_plain_values_and_unwraps_namespaces(value):
    assert plain(value) == value
    assert plain(_as_objects(value, 0)) == plain(_as_objects(value, 1)) == value


def test_params_take_torch_like_devices_without_torch_installed(exp):
    # The rule is by class: torch.device and torch.dtype, found by module and name, so that
    # converting never imports torch.  Classes that stand for them when torch is absent:
    device = type("device", (), {"__module__": "torch", "__str__": lambda self: "cuda:0"})
    dtype = type("dtype", (), {"__module__": "torch", "__str__": lambda self: "torch.bfloat16"})
    exp.params.set(device=device(), dtype=dtype())
    assert exp.params.get() == {"device": "cuda:0", "dtype": "torch.bfloat16"}


def test_a_config_that_contains_itself_is_refused_naming_the_key(exp):
    looped = argparse.Namespace(size=3)
    looped.inner = {"again": looped}
    with pytest.raises(TypeError, match="'model.inner.again'.*nothing of this set"):
        exp.params.set(model=looped)
    assert exp.params.get() == {}


def test_log_of_two_dicts_is_refused_instead_of_taking_the_second_as_flush(exp, dash_root):
    with pytest.raises(TypeError, match="takes one dict of fields.*_flush.*got dict"):
        exp.metrics.log({"a": 1}, {"b": 2})
    with pytest.raises(TypeError, match="takes one dict of fields"):
        exp.metrics("train").log({"a": 1}, {"b": 2})
    exp.flush()
    assert len(exp.metrics) == 0 and exp.metrics("train")._reader().count("train") == 0
