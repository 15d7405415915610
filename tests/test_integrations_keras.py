"""MLDashCallback with a real Keras 3 fit (torch backend): the stored streams
equal what Keras itself reports, value by value."""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # read by keras at import: before it
keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

from ml_dash import Experiment, load  # noqa: E402
from ml_dash.integrations.keras import MLDashCallback  # noqa: E402


class BatchLogs(keras.callbacks.Callback):
    """What Keras hands callbacks per batch, kept as floats."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def on_train_batch_end(self, batch, logs=None):
        self.rows.append({key: float(value) for key, value in logs.items()})


def tiny_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                              keras.layers.Dense(1)], name="tiny")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse", metrics=["mae"])
    return model


def data(n):
    x = np.random.default_rng(n).normal(size=(n, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def fit(model, callbacks, epochs=2):
    return model.fit(*data(64), batch_size=16, epochs=epochs, validation_data=data(16), verbose=0,
                     callbacks=callbacks)


def test_a_fit_lands_in_streams_equal_to_keras_history(tmp_path):
    root = str(tmp_path / "dash")
    batches = BatchLogs()
    history = fit(tiny_model(), [MLDashCallback("alice/keras/run", dash_root=root), batches])

    view = load("alice/keras/run", dash_root=root)
    assert view.status == "COMPLETED"
    epochs = history.history  # {"loss": [..], "mae": [..], "val_loss": [..], "val_mae": [..]}
    train, val = view.metrics("train"), view.metrics("val")
    assert train.column("epoch").tolist() == val.column("epoch").tolist() == [0, 1]
    for key in ("loss", "mae"):
        assert train.column(key).tolist() == pytest.approx(epochs[key], rel=1e-6)
        assert val.column(key).tolist() == pytest.approx(epochs[f"val_{key}"], rel=1e-6)

    stream = view.metrics("batch")
    assert len(stream) == len(batches.rows) == 2 * 4
    for key in ("loss", "mae"):
        assert stream.column(key).tolist() == pytest.approx([row[key] for row in batches.rows], rel=1e-6)
    assert stream.column("step").tolist() == list(range(1, 9))
    assert stream.column("batch").tolist() == [0, 1, 2, 3] * 2
    assert stream.column("epoch").tolist() == [0] * 4 + [1] * 4

    params = view.params.get()
    assert params["model.name"] == "tiny" and params["model.layers"] == 2
    assert params["model.params"] == 4 * 3 + 3 + 3 + 1
    assert params["fit.epochs"] == 2 and params["fit.steps_per_epoch"] == 4
    assert params["optimizer.class"] == "Adam"
    assert params["optimizer.learning_rate"] == pytest.approx(0.01)
    assert params["loss"] == "mse"


def test_every_n_batches_and_a_run_started_by_the_caller(tmp_path):
    root = str(tmp_path / "dash")
    with Experiment(prefix="alice/keras/mine", dash_root=root).run as exp:
        fit(tiny_model(), [MLDashCallback(exp, log_every_n_batches=3)])
        assert exp.status == "RUNNING"  # the caller's run stays open for its with block
        exp.params.set(batch_size=16)
    view = load("alice/keras/mine", dash_root=root)
    assert view.status == "COMPLETED"
    assert view.metrics("batch").column("step").tolist() == [3, 6]
    assert view.params.get()["batch_size"] == 16


def test_a_fit_that_raises_inside_the_callers_run_ends_it_failed(tmp_path):
    root = str(tmp_path / "dash")

    class Diverges(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise FloatingPointError("loss is NaN")

    with pytest.raises(FloatingPointError):
        with Experiment(prefix="alice/keras/bad", dash_root=root).run as exp:
            fit(tiny_model(), [MLDashCallback(exp), Diverges()])
    view = load("alice/keras/bad", dash_root=root)
    assert view.status == "FAILED"
    assert len(view.metrics("batch")) == 4 and len(view.metrics("train")) == 1


def test_early_stopping_completes_the_run(tmp_path):
    root = str(tmp_path / "dash")
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)
    fit(tiny_model(), [MLDashCallback("alice/keras/early", dash_root=root), stop], epochs=5)
    view = load("alice/keras/early", dash_root=root)
    assert view.status == "COMPLETED" and len(view.metrics("train")) < 5


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="log_every_n_batches"):
        MLDashCallback("alice/keras/x", log_every_n_batches=-1, dash_root=str(tmp_path))
    with pytest.raises(TypeError, match="Experiment or a prefix"):
        MLDashCallback(42)
    exp = Experiment(prefix="alice/keras/y", dash_root=str(tmp_path))
    with pytest.raises(TypeError, match="dash_root"):
        MLDashCallback(exp, dash_root=str(tmp_path))


def test_a_callback_whose_fit_raised_owns_its_run_in_the_next_fit(tmp_path):
    root = str(tmp_path / "dash")
    callback = MLDashCallback("alice/keras/retry", dash_root=root)

    class DivergesOnce(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise FloatingPointError("loss is NaN")

    with pytest.raises(FloatingPointError):
        fit(tiny_model(), [callback, DivergesOnce()])
    assert callback.experiment.status == "RUNNING"  # Keras told no callback
    fit(tiny_model(), [callback], epochs=1)
    view = load("alice/keras/retry", dash_root=root)
    assert view.status == "COMPLETED"  # the retry ended it
    assert len(view.metrics("train")) == 2  # the failed fit's first epoch, and the retry's
