"""Keras 3: ``MLDashCallback``, a ``Callback`` that writes ``model.fit()`` to ml_dash.

::

    from ml_dash.integrations.keras import MLDashCallback

    model.fit(x, y, epochs=10, validation_data=(xv, yv),
              callbacks=[MLDashCallback("alice/mnist/keras-run")])

Per batch, the logs Keras gives callbacks (the running means of the epoch so
far) go to the ``batch`` stream with ``epoch``, ``batch`` (within the epoch)
and ``step`` (since the start of fit); per epoch, the ``val_`` metrics go to
the ``val`` stream and the others to ``train``, with ``epoch``: the values of
``History.history``.  Params: the model's name, size and layer count, the
optimizer's config and loss, and fit's ``epochs`` and ``steps_per_epoch``.
Works with any Keras 3 backend (torch, JAX, TensorFlow).
"""

from __future__ import annotations

import math
from typing import Any

from ..experiment import Experiment
from ..extras import missing
from .hyperparams import storable
from .points import log_point

try:
    import keras
except ImportError:
    # the hint of ml_dash.extras: on the public index 'ml-dash' is another project's name
    raise ImportError(f"ml_dash.integrations.keras: {missing('keras', 'keras')}") from None

VAL_PREFIX = "val_"


class MLDashCallback(keras.callbacks.Callback):
    """Log ``fit()`` into an ml_dash run.

    ``experiment``: an :class:`~ml_dash.Experiment`, or a prefix (a template
    is expanded) for a new one made with ``dash_root`` and the other
    keywords (``description``, ``tags``...).  A run the callback starts, it
    ends at ``on_train_end`` as ``COMPLETED``; one the caller started is left
    open, for its ``with`` block to end (``FAILED`` if fit raises: Keras calls
    no callback then, so a run the callback started is ended by ml_dash at
    the interpreter's exit).  ``log_every_n_batches``: the ``batch`` stream
    takes one batch in n (1: every batch, 0: none).
    """

    def __init__(self, experiment: Experiment | str, *, log_every_n_batches: int = 1,
                 dash_root: str | None = None, **experiment_options: Any) -> None:
        super().__init__()
        if isinstance(log_every_n_batches, bool) or not isinstance(log_every_n_batches, int) \
                or log_every_n_batches < 0:
            raise ValueError("MLDashCallback: log_every_n_batches must be an int >= 0, got "
                             f"{log_every_n_batches!r}")
        if isinstance(experiment, str):
            experiment = Experiment(prefix=experiment, dash_root=dash_root, **experiment_options)
        elif not isinstance(experiment, Experiment):
            raise TypeError("MLDashCallback: experiment must be an ml_dash Experiment or a prefix, "
                            f"got {type(experiment).__name__}")
        elif dash_root is not None or experiment_options:
            raise TypeError("MLDashCallback: dash_root and Experiment keywords go with a prefix, "
                            "not with an Experiment made already")
        self.experiment = experiment
        self.log_every_n_batches = log_every_n_batches
        self._owns_run = False
        self._epoch = 0
        self._step = 0  # batches since fit began

    def on_train_begin(self, logs: dict | None = None) -> None:
        exp = self.experiment
        if exp.status != "RUNNING":  # not started, or ended by an earlier fit: this fit's own
            exp.run.start()
            self._owns_run = True
        # else: the caller's open run, or ours still open after an earlier fit raised
        self._step = 0
        exp.params.set(self._run_params())

    def _run_params(self) -> dict:
        """The model, its optimizer and the fit arguments Keras passes callbacks."""
        model, given = self.model, self.params or {}
        params: dict[str, Any] = {
            "model": {"name": model.name, "class": type(model).__name__, "params": model.count_params(),
                      "trainable_params": sum(math.prod(w.shape) for w in model.trainable_weights),
                      "layers": len(model.layers)},
            "fit": {"epochs": given.get("epochs"), "steps_per_epoch": given.get("steps")},
        }
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            params["optimizer"] = {"class": type(optimizer).__name__, **optimizer.get_config()}
        loss = getattr(model, "loss", None)
        if loss is not None:
            params["loss"] = loss if isinstance(loss, str) else getattr(loss, "name", None) or loss
        return storable(params)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._step += 1
        every = self.log_every_n_batches
        if every and self._step % every == 0:
            log_point(self.experiment.metrics("batch"),
                      {**(logs or {}), "epoch": self._epoch, "batch": batch, "step": self._step})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        train, val = {}, {}
        for key, value in (logs or {}).items():
            if key.startswith(VAL_PREFIX) and len(key) > len(VAL_PREFIX):
                val[key[len(VAL_PREFIX):]] = value
            else:
                train[key] = value
        points = {"train": {**train, "epoch": epoch}}
        if val:
            points["val"] = {**val, "epoch": epoch}
        # One snapshot: a reader sees an epoch's train and val points together.
        self.experiment.metrics.log(points).flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._owns_run:
            self.experiment.run.complete()
        else:
            self.experiment.flush()
