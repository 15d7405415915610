"""The Transformers callback, on the real library: a tiny randomly initialised BERT, built here
from a config, trained on CPU for a few steps by a real ``Trainer``; what lands in the store is
read back with ``load()`` and compared with the Trainer's own ``state.log_history``."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the import: nothing may reach the network

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # the Trainer needs it

from ml_dash import RUN, Experiment, load  # noqa: E402
from ml_dash.integrations.transformers import MLDashCallback  # noqa: E402

PREFIX = "alice/nlp/bert-tiny"


def tiny_model(**config):
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(transformers.BertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        vocab_size=100, **config))


class Sentences(torch.utils.data.Dataset):
    """Random token ids and labels; ``fail_after``: how many items are read before one raises."""

    def __init__(self, size=32, fail_after=None):
        generator = torch.Generator().manual_seed(size)
        self.ids = torch.randint(0, 100, (size, 8), generator=generator)
        self.fail_after = fail_after
        self.read = 0

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        self.read += 1
        if self.read > (self.fail_after if self.fail_after is not None else self.read):
            raise RuntimeError(f"sentence {index} is unreadable (item {self.read})")
        return {"input_ids": self.ids[index], "labels": int(index % 2)}


def trainer(tmp_path, callback, *, max_steps=6, train=None, model=None, **options):
    options = {"output_dir": str(tmp_path / "out"), "max_steps": max_steps, "logging_steps": 1,
               "eval_strategy": "steps", "eval_steps": 3, "save_strategy": "no",
               "per_device_train_batch_size": 4, "report_to": "none", "use_cpu": True,
               "disable_tqdm": True, "dataloader_num_workers": 0, **options}
    args = transformers.TrainingArguments(**options)
    return transformers.Trainer(model=model or tiny_model(), args=args,
                                train_dataset=train if train is not None else Sentences(),
                                eval_dataset=Sentences(8), callbacks=[callback])


def rows(view, stream):
    return [{k: v for k, v in row["data"].items() if k != "_ts"}
            for row in view.metrics(stream).read(limit=10_000)["data"]]


def expected_points(log_history):
    """What the callback promises for each entry of the Trainer's log_history."""
    train, evals = [], []
    for entry in log_history:
        steps = {"global_step": entry["step"], "epoch": entry["epoch"]}
        plain = {k: v for k, v in entry.items() if k not in ("step", "epoch")}
        evaluated = {k[len("eval_"):]: v for k, v in plain.items() if k.startswith("eval_")}
        others = {k: v for k, v in plain.items() if not k.startswith("eval_")}
        if evaluated:
            evals.append({**steps, **evaluated})
        if others:
            train.append({**steps, **others})
    return train, evals


def test_the_store_holds_the_trainers_log_history_value_by_value(tmp_path):
    run = trainer(tmp_path, MLDashCallback(prefix=PREFIX, dash_root=str(tmp_path / "dash")),
                  save_strategy="steps", save_steps=3)
    run.train()
    train, evals = expected_points(run.state.log_history)
    assert len(train) == 7 and len(evals) == 2  # 6 steps and the summary; 2 evaluations
    with load(PREFIX, dash_root=str(tmp_path / "dash")) as view:
        assert view.status == "COMPLETED"
        assert rows(view, "train") == train
        assert rows(view, "eval") == evals
        loss = view.metrics("train").column("loss")
        assert list(loss[:6]) == [entry["loss"] for entry in run.state.log_history if "loss" in entry]
        saved = [line["metadata"] for line in view.logs.read()["data"]
                 if line["message"] == "checkpoint saved"]
        assert [line["step"] for line in saved] == [3, 6]
        assert all(os.path.isdir(line["path"]) for line in saved)


def test_params_hold_the_training_arguments_and_the_model_config(tmp_path):
    run = trainer(tmp_path, MLDashCallback(prefix=PREFIX, dash_root=str(tmp_path / "dash")),
                  learning_rate=3e-4, seed=7)
    run.train()
    params = load(PREFIX, dash_root=str(tmp_path / "dash")).params.get()
    assert params["args.learning_rate"] == 3e-4
    assert params["args.seed"] == 7
    assert params["args.max_steps"] == 6
    assert params["args.report_to"] == []
    assert params["model.hidden_size"] == 16
    assert params["model.num_attention_heads"] == 2
    assert params["model.id2label.0"] == "LABEL_0"  # a nested dict opened into dotted keys
    assert params["model.model_type"] == "bert"


def test_a_value_that_cannot_be_stored_is_left_out_and_named(tmp_path):
    class Helper:  # an object in the config: no parameter one can store
        pass

    dash_root = str(tmp_path / "dash")
    run = trainer(tmp_path, MLDashCallback(prefix=PREFIX, dash_root=dash_root), max_steps=1,
                  model=tiny_model(helper=Helper(), shapes=[1, Helper()], widths=(8, 16)))
    run.train()
    with pytest.warns(UserWarning, match="'blob' as a Helper"):
        run.log({"blob": Helper(), "note": "warm-up done", "ratio": torch.tensor(0.25),
                 "eval_score": torch.tensor([2.0])})
    with pytest.warns(UserWarning) as warned:
        run.log({"blob": Helper(), "_ts": 5.0, "": 1})  # nothing storable: no launch for it
    assert sorted(str(w.message).split(" which")[0] for w in warned) == [
        "MLDashCallback: the Trainer logged '' as a key,",
        "MLDashCallback: the Trainer logged '_ts' as a key,"]  # 'blob': warned once already
    view = load(PREFIX, dash_root=dash_root)
    assert len(view.launches) == 2  # the training, and the log after it
    params = view.params.get()
    assert "model.helper" not in params and "model.shapes" not in params
    assert params["model.widths"] == [8, 16]
    warn_lines = view.logs.read(level="warn")["data"]
    assert warn_lines[0]["metadata"]["keys"] == ["model.helper", "model.shapes"]
    last = rows(view, "train")[-1]
    assert last == {"global_step": 1, "epoch": last["epoch"], "note": "warm-up done", "ratio": 0.25}
    assert rows(view, "eval")[-1]["score"] == 2.0


def test_evaluate_after_training_is_a_short_launch_of_the_same_run(tmp_path):
    dash_root = str(tmp_path / "dash")
    run = trainer(tmp_path, MLDashCallback(prefix=PREFIX, dash_root=dash_root), max_steps=3)
    run.train()
    metrics = run.evaluate()
    view = load(PREFIX, dash_root=dash_root)
    assert [launch["status"] for launch in view.launches] == ["COMPLETED", "COMPLETED"]
    assert rows(view, "eval")[-1]["loss"] == metrics["eval_loss"]


def test_a_run_the_caller_opened_is_the_callers_and_fails_with_the_exception(tmp_path):
    exp = Experiment(PREFIX, dash_root=str(tmp_path / "dash"))
    with pytest.raises(RuntimeError, match="unreadable [(]item 9[)]"):
        with exp.run:
            failing = trainer(tmp_path, MLDashCallback(exp), train=Sentences(fail_after=8))
            failing.train()
    view = load(PREFIX, dash_root=str(tmp_path / "dash"))
    assert view.status == "FAILED"
    assert view.error["type"] == "RuntimeError" and "item 9" in view.error["message"]
    assert rows(view, "train") == expected_points(failing.state.log_history)[0] != []


def test_the_callback_class_alone_records_into_the_launchs_default_run(tmp_path, monkeypatch):
    """``callbacks=[MLDashCallback]``: the Trainer makes the callback, with no arguments."""
    monkeypatch.setenv("ML_DASH_ROOT", str(tmp_path / "dash"))
    RUN.prefix = "alice/nlp/by-class"
    run = trainer(tmp_path, MLDashCallback, max_steps=2)
    run.train()
    view = load("alice/nlp/by-class", dash_root=str(tmp_path / "dash"))
    assert view.status == "COMPLETED"
    assert rows(view, "train") == expected_points(run.state.log_history)[0]


def test_the_callback_leaves_an_open_run_open(tmp_path):
    with Experiment(PREFIX, dash_root=str(tmp_path / "dash")).run as exp:
        trainer(tmp_path, MLDashCallback(exp), max_steps=2).train()
        assert exp.status == "RUNNING"
        exp.metrics("test").log(accuracy=0.5)
    assert load(PREFIX, dash_root=str(tmp_path / "dash")).status == "COMPLETED"


def test_training_again_after_a_failure_closes_the_failed_launch_first(tmp_path):
    dash_root = str(tmp_path / "dash")
    callback = MLDashCallback(prefix=PREFIX, dash_root=dash_root)
    failing = trainer(tmp_path, callback, train=Sentences(fail_after=4))
    with pytest.raises(RuntimeError):
        failing.train()
    assert callback.experiment.status == "RUNNING"  # the Trainer has no hook for an exception
    trainer(tmp_path, callback, max_steps=2).train()
    view = load(PREFIX, dash_root=dash_root)
    assert [launch["status"] for launch in view.launches] == ["FAILED", "COMPLETED"]
    assert "ended before on_train_end" in view.logs.read(level="error")["data"][0]["message"]


SCRIPT = """
import json, pathlib, sys
sys.path.insert(0, {tests!r})
from test_integrations_transformers import MLDashCallback, Sentences, trainer
run = trainer(pathlib.Path({tmp!r}), MLDashCallback(prefix={prefix!r}, dash_root={root!r}),
              train=Sentences(fail_after=8))
try:
    run.train()
except RuntimeError:
    if not {caught}:
        raise
    print("caught, carrying on")
finally:
    pathlib.Path({tmp!r}, "history.json").write_text(json.dumps(run.state.log_history))
"""


@pytest.mark.parametrize("caught", [False, True], ids=["uncaught", "caught"])
def test_a_training_that_raises_ends_failed_when_the_program_exits(tmp_path, caught):
    """A real process: ml_dash's exit handling closes the run that never reached on_train_end,
    ``FAILED`` even when the program caught the exception and ended normally."""
    dash_root = str(tmp_path / "dash")
    script = SCRIPT.format(tests=os.path.dirname(__file__), tmp=str(tmp_path), prefix=PREFIX,
                           root=dash_root, caught=caught)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == (0 if caught else 1), done.stderr[-2000:]
    view = load(PREFIX, dash_root=dash_root)
    assert view.status == "FAILED"
    if caught:
        assert "ended before on_train_end" in view.logs.read(level="error")["data"][0]["message"]
    else:
        assert view.error["type"] == "RuntimeError" and "item 9" in view.error["message"]
    history = json.loads((tmp_path / "history.json").read_text())
    assert rows(view, "train") == expected_points(history)[0] != []


def test_only_the_main_process_writes(tmp_path):
    callback = MLDashCallback(prefix=PREFIX, dash_root=str(tmp_path / "dash"))
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none",
                                          use_cpu=True)
    state = transformers.TrainerState(is_world_process_zero=False, global_step=1, epoch=0.5)
    control = transformers.TrainerControl()
    callback.on_train_begin(args, state, control, model=tiny_model())
    callback.on_log(args, state, control, logs={"loss": 0.5})
    callback.on_save(args, state, control)
    callback.on_train_end(args, state, control)
    assert callback.experiment.status is None
    assert not (tmp_path / "dash").exists()


def test_report_to_takes_only_the_libraries_own_names(tmp_path):
    """Why the docs say callbacks=[MLDashCallback(...)]: the Trainer refuses a name outside its
    own table.  Should a release accept third-party names, this test says it is time to use it."""
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), report_to="ml_dash",
                                          use_cpu=True)
    with pytest.raises(ValueError, match="ml_dash is not supported"):
        transformers.Trainer(model=tiny_model(), args=args, train_dataset=Sentences())


def test_wrong_arguments_are_refused_at_the_call(tmp_path):
    with pytest.raises(TypeError, match="takes an ml_dash Experiment, got str"):
        MLDashCallback("alice/nlp/run")
    exp = Experiment(PREFIX, dash_root=str(tmp_path / "dash"))
    with pytest.raises(TypeError, match="prefix= names a new experiment"):
        MLDashCallback(exp, prefix="alice/nlp/other")
    with pytest.raises(TypeError, match="tags= names a new experiment"):
        MLDashCallback(exp, tags=["x"])
    with pytest.raises(ValueError, match="alice/../x"):
        MLDashCallback(prefix="alice/../x", dash_root=str(tmp_path / "dash"))
    with pytest.raises(TypeError, match="stream name None"):
        MLDashCallback(prefix=PREFIX, dash_root=str(tmp_path / "dash"), routes={"val_": None})
    with pytest.raises(TypeError, match="train_stream"):
        MLDashCallback(prefix=PREFIX, dash_root=str(tmp_path / "dash"), train_stream="")
    assert not (tmp_path / "dash").exists()


def test_routes_name_the_streams(tmp_path):
    dash_root = str(tmp_path / "dash")
    callback = MLDashCallback(prefix=PREFIX, dash_root=dash_root, train_stream="fit",
                              routes={"eval_": "validation"})
    trainer(tmp_path, callback, max_steps=3).train()
    view = load(PREFIX, dash_root=dash_root)
    assert [s["name"] for s in view.metrics.list_all()] == ["fit", "validation"]
    assert "loss" in view.metrics("validation").keys()


def test_the_overhead_bench_runs_and_reports_every_measure(tmp_path):
    bench = os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench",
                         "integrations_transformers.py")
    table = tmp_path / "table.md"
    subprocess.run([sys.executable, bench, "--quick", "--write", str(table)], check=True,
                   capture_output=True, text=True, timeout=120)
    lines = table.read_text().splitlines()
    for measure in ("training step without the callback", "training step with it",
                    "inside the callback per logged step (on_log)", "on_train_begin", "on_train_end"):
        row = next(line for line in lines if measure in line)
        assert row.split("|")[2].strip()[0].isdigit(), row
