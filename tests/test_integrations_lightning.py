"""MLDashLogger with a real Lightning Trainer: what lands in the store, read back
through ml_dash's own API, compared with Lightning's CSVLogger on the same run."""

import csv
import math
import os
import pickle

import pytest

pytest.importorskip("lightning")
torch = pytest.importorskip("torch")

from lightning.fabric.utilities.rank_zero import rank_zero_only  # noqa: E402
from lightning.pytorch import LightningModule, Trainer  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ml_dash import list_experiments, load  # noqa: E402
from ml_dash.integrations.lightning import MLDashLogger, route  # noqa: E402


class Tiny(LightningModule):
    """A linear regression; ``fail_at``: the training step that raises."""

    def __init__(self, lr=0.05, layers=(4, 1), loss=torch.nn.MSELoss, fail_at=None):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(4, 1)
        self.fail_at = fail_at

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at:
            raise RuntimeError("diverged")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)  # on_step in training: one point per logged step
        self.log("train/abs", loss.sqrt(), on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test/mse", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader(n=64):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def trainer(tmp_path, logger, **options):
    options = {"max_epochs": 2, "log_every_n_steps": 1, "enable_progress_bar": False,
               "enable_model_summary": False, "default_root_dir": str(tmp_path), **options}
    return Trainer(logger=logger, accelerator="cpu", **options)


def csv_rows(logger):
    with open(os.path.join(logger.log_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def test_a_fit_lands_in_streams_equal_to_the_csv_logger(tmp_path):
    root = str(tmp_path / "dash")
    ours = MLDashLogger("alice/tiny", dash_root=root)
    theirs = CSVLogger(str(tmp_path / "csv"))
    trainer(tmp_path, [ours, theirs]).fit(Tiny(), loader(), loader(16))

    assert ours.prefix == "alice/tiny/lightning_logs/version_0" and ours.version == 0
    view = load(ours.prefix, dash_root=root)
    assert view.status == "COMPLETED"
    expected = {}  # stream: [{field: value}], from the CSV rows, one point per row and stream
    for row in csv_rows(theirs):
        values = {key: float(value) for key, value in row.items() if value != ""}
        shared = {key: values.pop(key) for key in ("step", "epoch") if key in values}
        for stream, fields in route(values).items():
            expected.setdefault(stream, []).append({**shared, **fields})
    assert set(expected) == {"train", "val"}
    assert len(expected["train"]) == 2 * 8 + 2 and len(expected["val"]) == 2  # steps, epoch ends
    for stream, points in expected.items():
        rows = view.metrics(stream).read(limit=1000)["data"]
        assert len(rows) == len(points), stream
        for row, point in zip(rows, points):
            stored = {key: value for key, value in row["data"].items() if key != "_ts"}
            assert stored == pytest.approx(point, rel=1e-12), stream  # the same fields, the same values
    assert view.metrics("train").column("step").tolist() == [p["step"] for p in expected["train"]]

    params = view.params.get()
    assert params["lr"] == 0.05 and params["layers"] == [4, 1]
    assert params["loss"] == "torch.nn.modules.loss.MSELoss"  # a class is stored by its name
    assert params["fail_at"] is None


def test_versions_count_up_and_a_given_version_is_kept(tmp_path):
    root = str(tmp_path / "dash")
    for expected in (0, 1):
        logger = MLDashLogger("alice/tiny", dash_root=root)
        logger.log_metrics({"train/loss": 1.0}, step=0)
        logger.finalize("success")
        assert logger.version == expected
    named = MLDashLogger("alice/tiny", name="sweep", version="lr-0.1", dash_root=root)
    named.log_metrics({"loss": 2.0}, step=3)
    named.finalize("success")
    assert [run["prefix"] for run in list_experiments(root)] == [
        "alice/tiny/lightning_logs/version_0", "alice/tiny/lightning_logs/version_1",
        "alice/tiny/sweep/lr-0.1"]
    row = load("alice/tiny/sweep/lr-0.1", dash_root=root).metrics.read()["data"][0]["data"]
    assert (row["loss"], row["step"]) == (2.0, 3)  # a name without a phase: the root stream
    assert MLDashLogger("alice/tiny", dash_root=root).version == 2


def test_a_training_step_that_raises_ends_the_run_failed(tmp_path):
    root = str(tmp_path / "dash")
    logger = MLDashLogger("alice/tiny", dash_root=root)
    with pytest.raises(RuntimeError, match="diverged"):
        trainer(tmp_path, logger).fit(Tiny(fail_at=3), loader(), loader(16))
    view = load(logger.prefix, dash_root=root)
    assert view.status == "FAILED"
    assert len(view.metrics("train")) == 3  # the steps before the failure were committed


def test_test_after_fit_continues_the_run(tmp_path):
    root = str(tmp_path / "dash")
    logger = MLDashLogger("alice/tiny", dash_root=root)
    fit = trainer(tmp_path, logger)
    model = Tiny()
    fit.fit(model, loader(), loader(16))
    fit.test(model, loader(16), verbose=False)
    view = load(logger.prefix, dash_root=root)
    assert view.status == "COMPLETED"
    assert len(view.metrics("test")) == 1 and "mse" in view.metrics("test").keys()
    assert len(view.metrics("train")) == 18  # still the fit's points: the run was continued


def test_log_model_uploads_the_checkpoints(tmp_path):
    root = str(tmp_path / "dash")
    logger = MLDashLogger("alice/tiny", dash_root=root, log_model=True)
    checkpoint = ModelCheckpoint(monitor="val_loss", save_last=True)
    trainer(tmp_path, logger, callbacks=[checkpoint]).fit(Tiny(), loader(), loader(16))
    view = load(logger.prefix, dash_root=root)
    records = {record["filename"]: record for record in view.files("checkpoints").list()}
    best = os.path.basename(checkpoint.best_model_path)
    assert set(records) == {best, "last.ckpt"}
    assert records[best]["metadata"]["role"] in ("best", "best_k")
    assert math.isclose(records[best]["metadata"]["score"], checkpoint.best_model_score.item())
    stored = view.files(f"checkpoints/{best}").read_bytes()
    with open(checkpoint.best_model_path, "rb") as f:
        assert stored == f.read()


def test_log_model_all_uploads_each_checkpoint_as_it_is_saved(tmp_path):
    root = str(tmp_path / "dash")
    logger = MLDashLogger("alice/tiny", dash_root=root, log_model="all")
    checkpoint = ModelCheckpoint(save_top_k=-1)  # one file per epoch
    trainer(tmp_path, logger, callbacks=[checkpoint]).fit(Tiny(), loader(), loader(16))
    names = sorted(r["filename"] for r in load(logger.prefix, dash_root=root).files("checkpoints").list())
    assert names == ["epoch=0-step=8.ckpt", "epoch=1-step=16.ckpt"]


def test_only_rank_zero_writes_unless_told(tmp_path, monkeypatch):
    root = str(tmp_path / "dash")
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    quiet = MLDashLogger("alice/tiny", dash_root=root)
    quiet.log_hyperparams({"lr": 0.1})
    quiet.log_metrics({"train/loss": 1.0}, step=0)
    quiet.finalize("success")
    assert list_experiments(root) == []
    every = MLDashLogger("alice/tiny", dash_root=root, rank_zero_only=False)
    every.log_metrics({"train/loss": 1.0}, step=0)
    every.finalize("success")
    assert [run["prefix"] for run in list_experiments(root)] == ["alice/tiny/lightning_logs/version_0/rank_1"]


def test_a_started_experiment_is_logged_into_and_left_open(tmp_path):
    from ml_dash import Experiment

    root = str(tmp_path / "dash")
    with Experiment(prefix="alice/tiny/mine", dash_root=root).run as exp:
        logger = MLDashLogger(experiment=exp)
        assert (logger.name, logger.version) == ("alice/tiny", "mine")
        trainer(tmp_path, logger, max_epochs=1).fit(Tiny(), loader(), loader(16))
        assert exp.status == "RUNNING"  # the with block ends it
        exp.metrics("notes").log(after=1)
    view = load("alice/tiny/mine", dash_root=root)
    assert view.status == "COMPLETED" and len(view.metrics("train")) == 9 and len(view.metrics("notes")) == 1


@pytest.mark.parametrize("key, stream, field", [
    ("train_loss", "train", "loss"), ("train/loss", "train", "loss"), ("val_acc", "val", "acc"),
    ("val_loss/dataloader_idx_1", "val", "loss/dataloader_idx_1"), ("test/f1", "test", "f1"),
    ("gan/d_loss", "gan", "d_loss"), ("lr-SGD", None, "lr-SGD"), ("training_loss", None, "training_loss"),
    ("train", None, "train"), ("val_", None, "val_"), ("/x", None, "/x"),
])
def test_metric_names_route_to_streams(key, stream, field):
    assert route({key: 1.0}) == {stream: {field: 1.0}}


def test_bad_values_are_refused_naming_the_key(tmp_path):
    logger = MLDashLogger("alice/tiny", dash_root=str(tmp_path / "dash"))
    with pytest.raises(TypeError, match="loss"):
        logger.log_metrics({"train/loss": object()}, step=0)
    with pytest.raises(ValueError, match="log_model"):
        MLDashLogger("alice/tiny", log_model="best")
    with pytest.raises(TypeError, match="log_hyperparams"):
        logger.log_hyperparams({"a": 1}, "extra")
    with pytest.raises(TypeError, match="metric names must be str"):
        logger.log_metrics({3: 1.0}, step=0)
    with pytest.raises(ValueError, match=r"\.\."):
        MLDashLogger("alice/tiny", name="..")
    with pytest.raises(TypeError, match="not both"):
        MLDashLogger("alice/other", experiment=logger.experiment)
    with pytest.raises(TypeError, match="colour"):
        MLDashLogger("alice/tiny", colour="red")  # not an Experiment keyword: refused before fit
    logger.log_metrics({"train/loss": 0.5}, step=1)  # the refused call staged nothing
    logger.finalize("success")
    assert load(logger.prefix, dash_root=str(tmp_path / "dash")).metrics("train").column("loss").tolist() == [0.5]


def test_a_pickled_logger_leaves_the_run_behind_and_continues_it(tmp_path):
    """What ddp_spawn does with the trainer's loggers: the copy opens the run again."""
    root = str(tmp_path / "dash")
    logger = MLDashLogger("alice/tiny", name="{literal}", dash_root=root)
    logger.log_metrics({"train/loss": 1.0}, step=0)
    copy = pickle.loads(pickle.dumps(logger))
    logger.finalize("success")
    copy.log_metrics({"train/loss": 0.5}, step=1)
    copy.finalize("success")
    assert copy.prefix == logger.prefix == "alice/tiny/{literal}/version_0"  # braces in a name are text
    assert load(logger.prefix, dash_root=root).metrics("train").column("loss").tolist() == [1.0, 0.5]
