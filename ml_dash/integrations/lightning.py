"""PyTorch Lightning: ``MLDashLogger``, a ``Logger`` that writes a Trainer's run to ml_dash.

::

    from lightning.pytorch import Trainer
    from ml_dash.integrations.lightning import MLDashLogger

    trainer = Trainer(logger=MLDashLogger("alice/mnist"), max_epochs=10)

The run is stored under ``<prefix>/<name>/<version>`` (``alice/mnist/
lightning_logs/version_0``), the layout of Lightning's own CSV and TensorBoard
loggers, with versions counted up from the runs already stored.  Metric names
are routed to streams (see :func:`route`); ``step`` and Lightning's ``epoch``
are fields of every point.  Hyperparameters go to params, checkpoints to files
when ``log_model`` asks for them, and the trainer's end to the run's status.

Only rank 0 writes (``rank_zero_only=True``), as Lightning's loggers do; with
``rank_zero_only=False`` every rank writes a run of its own, ``.../rank_<r>``.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any

from ..analysis.listing import list_experiments
from ..experiment import Experiment
from ..extras import missing
from ..run import RUN
from ..templates import literal
from .hyperparams import storable
from .points import log_point

try:
    from lightning.fabric.utilities.rank_zero import rank_zero_only as _rank
    from lightning.pytorch.loggers import Logger
    from lightning.pytorch.loggers.logger import DummyExperiment
    _OTHER_RANK_MODULE = "lightning_fabric.utilities.rank_zero"
except ImportError:  # the older package name, when only it is installed
    try:
        from lightning_fabric.utilities.rank_zero import rank_zero_only as _rank
        from pytorch_lightning.loggers import Logger
        from pytorch_lightning.loggers.logger import DummyExperiment
        _OTHER_RANK_MODULE = "lightning.fabric.utilities.rank_zero"
    except ImportError:
        # the hint of ml_dash.extras: on the public index 'ml-dash' is another project's name
        raise ImportError(f"ml_dash.integrations.lightning: {missing('lightning', 'lightning')}") from None

PHASES = ("train", "val", "validation", "valid", "test", "predict", "eval")
"""Metric name beginnings that name a stream: ``val_loss`` and ``val/loss`` go to ``val``."""
SHARED = ("step", "epoch")
"""Fields given to every point of a ``log_metrics`` call (Lightning adds ``epoch``)."""
STATUS = {"success": "COMPLETED", "failed": "FAILED"}
"""Lightning's ``finalize`` statuses; any other ("finished" before a SLURM requeue) cancels."""


def route(metrics: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    """``{stream (None: the root): fields}`` of one ``log_metrics`` call.

    - ``train/loss``, ``train_loss``, ``val_acc``, ``test/f1``...: a name that
      begins with one of :data:`PHASES` and ``/`` or ``_`` goes to that stream,
      as the rest of the name (``val_loss/dataloader_idx_0`` is the field
      ``loss/dataloader_idx_0`` of ``val``);
    - another name with a ``/`` goes to the stream named before it
      (``gan/d_loss``: field ``d_loss`` of ``gan``);
    - any other name (``lr-Adam``, ``loss``) is a field of the root stream.

    (Rejected: every name on the root stream, as one wide table: Lightning's
    train and validation metrics are logged at different steps, and a stream
    per phase gives each its own points and columns without NaN gaps.)
    """
    streams: dict[str | None, dict[str, Any]] = {}
    for key, value in metrics.items():
        stream, field = _split_checked(key)
        streams.setdefault(stream, {})[field] = value
    return streams


def _split_checked(key):
    if type(key) is not str:
        raise TypeError(f"MLDashLogger: metric names must be str, got {key!r} ({type(key).__name__})")
    return _split(key)


def _split(key):
    for phase in PHASES:
        if key.startswith(phase) and key[len(phase):len(phase) + 1] in ("/", "_") and len(key) > len(phase) + 1:
            return phase, key[len(phase) + 1:]
    head, slash, rest = key.partition("/")
    if slash and head and rest:
        return head, rest
    return None, key


def _writing_rank(method):
    """Run ``method`` only on a rank that writes: rank 0, or every rank when told so."""
    @functools.wraps(method)
    def on_writing_rank(self, *args, **kwargs):
        if self._every_rank or _rank_now() == 0:
            return method(self, *args, **kwargs)
        return None
    return on_writing_rank


def _rank_now() -> int:
    """This process's global rank, as Lightning's strategy set it: in either package, since a
    ``pytorch_lightning`` Trainer sets the rank of its own copy of ``rank_zero_only``.

    Read from the functions' ``__dict__``: ``getattr`` with a default raises and catches
    an AttributeError when the rank is not set, ~2 us on every step.
    """
    rank = vars(_rank).get("rank") or 0
    other = sys.modules.get(_OTHER_RANK_MODULE)
    if other is not None:
        rank = max(rank, vars(other.rank_zero_only).get("rank") or 0)
    return rank


class MLDashLogger(Logger):
    """A Lightning logger storing one run in ml_dash.

    ``prefix``: the folder of the runs, ``owner/project[/...]`` (a template
    is expanded); default ``RUN.project`` (``"{user}/scratch"``).
    ``name``: the experiment's folder under it (Lightning's default
    ``"lightning_logs"``; None or ``""`` for none).  ``version``: an int
    (``version_<n>``) or a folder name; default one more than the highest
    ``version_<n>`` stored.  ``experiment``: an :class:`~ml_dash.Experiment`
    to log into instead; one the caller has started is left open by
    :meth:`finalize` (its ``with`` block ends it).  ``log_model``: False, True
    (the best and last checkpoints, uploaded when training ends) or
    ``"all"`` (every checkpoint when it is saved), into the run's files under
    ``checkpoints/``.  ``rank_zero_only``: only rank 0 writes.  Other keywords
    (``description``, ``tags``, ``metadata``, ``dash_root``...) go to
    ``Experiment``.
    """

    def __init__(self, prefix: str | None = None, *, name: str | None = "lightning_logs",
                 version: int | str | None = None, dash_root: str | None = None,
                 experiment: Experiment | None = None, log_model: bool | str = False,
                 rank_zero_only: bool = True, **experiment_options: Any) -> None:
        super().__init__()
        if log_model not in (False, True, "all"):
            raise ValueError(f"MLDashLogger: log_model must be False, True or 'all', got {log_model!r}")
        if version is not None and not isinstance(version, (int, str)) or isinstance(version, bool):
            raise TypeError(f"MLDashLogger: version must be an int or a str, got {type(version).__name__}")
        if experiment is not None and not isinstance(experiment, Experiment):
            raise TypeError("MLDashLogger: experiment must be an ml_dash Experiment, got "
                            f"{type(experiment).__name__}")
        if experiment is not None and (prefix is not None or version is not None or dash_root is not None
                                       or experiment_options):
            raise TypeError("MLDashLogger: give an experiment or a prefix, version, dash_root and "
                            f"Experiment keywords, not both: {experiment.prefix!r} names the run")
        self._base = RUN(prefix=prefix if prefix is not None else RUN.project).prefix  # checked now
        self._name = name or ""
        self._every_rank = not rank_zero_only
        if experiment is None:  # a name, version or keyword the run cannot take: refused now, not at fit
            Experiment(prefix=literal(self._prefix_of(version if version is not None else 0)),
                       dash_root=dash_root, **experiment_options)
        self._version = version
        self._dash_root = experiment.dash_root if experiment is not None else dash_root
        self._options = experiment_options
        self._log_model = log_model
        self._experiment = experiment
        self._given = experiment.prefix if experiment is not None else None
        self._owns_run = experiment is None or experiment.status != "RUNNING"
        self._checkpoint_callback: Any = None
        self._plans: dict[tuple, tuple] = {}  # metric names: their routing (see _plan)
        self._uploaded: dict[str, float] = {}  # checkpoint path: its mtime when uploaded

    # -- where the run is ------------------------------------------------------------

    @property
    def name(self) -> str:
        """The experiment's folder (``"lightning_logs"``); with ``experiment=``, its prefix's folder."""
        if self._given is not None:
            return self._given.rpartition("/")[0]
        return self._name

    @property
    def version(self) -> int | str:
        """The run's version: an int (``version_<n>``) or the folder name given."""
        if self._given is not None:
            return self._given.rpartition("/")[2]
        if self._version is None:
            self._version = self._next_version()
        return self._version

    @property
    def prefix(self) -> str:
        """The run's prefix in the store."""
        if self._given is not None:
            return self._given
        return self._prefix_of(self.version)

    def _prefix_of(self, version):
        folder = version if isinstance(version, str) else f"version_{version}"
        parts = [self._base, self._name, folder]
        if self._every_rank:
            parts.append(f"rank_{_rank_now()}")
        return "/".join(part for part in parts if part)

    def _next_version(self) -> int:
        """One more than the highest ``version_<n>`` stored under ``prefix/name``."""
        parent = "/".join(part for part in (self._base, self._name) if part)
        taken = [-1]
        for run in list_experiments(self._dash_root, _escape(parent) + "/**"):
            folder = run["prefix"][len(parent) + 1:].split("/")[0]
            if run["prefix"].startswith(parent + "/") and folder.startswith("version_") \
                    and folder[8:].isdigit():
                taken.append(int(folder[8:]))
        return max(taken) + 1

    @property
    def save_dir(self) -> str | None:
        """None: the run is in the store, and Lightning puts checkpoints under the trainer's
        ``default_root_dir``/``name``/``version``."""
        return None

    # -- the run ---------------------------------------------------------------------

    @property
    def experiment(self) -> Experiment:
        """The run's :class:`~ml_dash.Experiment`, started on first use (and again after
        :meth:`finalize`, for a ``trainer.test()`` after ``fit()``: the run continues).
        On a rank that does not write, a stand-in that does nothing."""
        if not (self._every_rank or _rank_now() == 0):
            return DummyExperiment()
        exp = self._experiment
        if exp is None:
            exp = self._experiment = self._new_experiment()
        if exp.status != "RUNNING":
            exp.run.start()
        return exp

    def _new_experiment(self) -> Experiment:
        # self.prefix is expanded already: its braces are text (a given experiment's prefix is
        # only used here when this logger was pickled without it, see __getstate__)
        return Experiment(prefix=literal(self.prefix), dash_root=self._dash_root, **self._options)

    def __getstate__(self) -> dict:
        """Without the live run, whose store and threads belong to this process: a copy
        sent to another process (``ddp_spawn``) opens the same prefix when it writes."""
        state = self.__dict__.copy()
        state["_experiment"] = None
        state["_checkpoint_callback"] = None
        return state

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Stage one point per stream (see :func:`route`), each holding ``step`` and the
        call's ``epoch``; committed by ml_dash's timed commit or by :meth:`finalize`.

        The hot path of a training loop, kept flat: no decorator, and the routing of a
        set of metric names planned once (:meth:`_plan`); here it runs between torch's
        work, with cold caches, where each call costs several times what it does in a
        tight loop (bench/integrations.py).
        """
        if not (self._every_rank or _rank_now() == 0):
            return
        names = tuple(metrics)
        plan = self._plans.get(names) or self._plan(names)
        shared = {key: metrics[key] for key in plan[0]}
        if step is not None:
            shared["step"] = step
        exp = self._experiment
        if exp is None or exp.status != "RUNNING":  # (the property checks the rank again: done here)
            exp = self.experiment
        streams = exp.metrics
        # One time for the points of one call, as exp.metrics.log() gives them (None: now).
        ts = time.time() if len(plan[1]) > 1 else None
        for stream, fields in plan[1]:
            log_point(streams(stream), {**shared, **{field: metrics[key] for key, field in fields}}, ts)

    def _plan(self, keys: tuple) -> tuple:
        """``(shared keys, [(stream, [(metric key, field)])])`` for the metric names ``keys``:
        :func:`route`'s answer, kept for the next call with the same names (Lightning
        logs the same few sets again and again; past 256 sets, plans are not kept)."""
        shared = tuple(key for key in SHARED if key in keys)
        routed: dict = {}
        for key in keys:
            if key not in shared:
                stream, field = _split_checked(key)
                routed.setdefault(stream, []).append((key, field))
        plan = (shared, list(routed.items()) or [(None, [])])
        if len(self._plans) < 256:
            self._plans[keys] = plan
        return plan

    @_writing_rank
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Set ``params`` (a dict, ``Namespace`` or ``AttributeDict``; nested dicts are
        flattened to ``a.b``) into the run's params.  Classes, functions and other
        objects are stored as text (see ``hyperparams``).  ``metrics``, as the
        TensorBoard logger takes them, are logged at step 0."""
        metrics = kwargs.pop("metrics", None)
        if args or kwargs:
            raise TypeError(f"MLDashLogger.log_hyperparams() takes params and metrics=, got "
                            f"{len(args)} more positional arguments and {sorted(kwargs)}")
        if params is not None:
            converted = storable(vars(params) if type(params).__name__ == "Namespace" else params)
            if not isinstance(converted, dict):
                raise TypeError(f"MLDashLogger.log_hyperparams(): params must be a dict or a "
                                f"Namespace, got {type(params).__name__}")
            self.experiment.params.set(converted)
        if metrics:
            self.log_metrics(metrics, 0)

    def save(self) -> None:
        """Nothing to do: Lightning calls this after every ``log_metrics``, and a commit per
        step would cost more than the step.  (Rejected: ``flush()`` here, ~50 us a step;
        staged points are committed within ``ML_DASH_FLUSH_INTERVAL`` seconds, and by
        :meth:`finalize`.)"""

    @_writing_rank
    def finalize(self, status: str) -> None:
        """End the run: ``"success"`` as ``COMPLETED``, ``"failed"`` as ``FAILED`` (or
        ``CANCELLED`` for a Ctrl-C), anything else as ``CANCELLED``; a run the caller
        started is only committed.  With ``log_model=True`` the checkpoints are uploaded
        first."""
        exp = self._experiment
        if exp is None or exp.status != "RUNNING":
            return  # nothing was logged, or finalized already
        if self._checkpoint_callback is not None and status == "success":
            self._upload_checkpoints(self._checkpoint_callback)
        if not self._owns_run:
            exp.flush()
            return
        outcome = STATUS.get(status, "CANCELLED")
        error = sys.exc_info()[1]  # Lightning finalizes "failed" inside its except block
        if outcome == "FAILED" and isinstance(error, KeyboardInterrupt):
            outcome = "CANCELLED"
        if outcome == "COMPLETED":
            exp.run.complete()
        elif outcome == "FAILED":
            exp.run.fail(error)
        else:
            exp.run.cancel()

    @_writing_rank
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """With ``log_model="all"`` (or True and ``save_top_k=-1``), upload the new
        checkpoints now; with True, remember the callback, for :meth:`finalize`."""
        if self._log_model == "all" or (self._log_model is True
                                        and getattr(checkpoint_callback, "save_top_k", None) == -1):
            self._upload_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callback = checkpoint_callback

    def _upload_checkpoints(self, callback: Any) -> None:
        """Upload the callback's checkpoints not yet uploaded (or changed since) into
        ``checkpoints/``, each with its score, monitored metric and role."""
        found: dict[str, tuple[Any, str]] = {}
        for path, score in getattr(callback, "best_k_models", {}).items():
            found[path] = (score, "best_k")
        for attribute, role in (("best_model_path", "best"), ("last_model_path", "last")):
            path = getattr(callback, attribute, "")
            if path:
                score = callback.best_model_score if role == "best" else getattr(callback, "current_score", None)
                found[path] = (score, role)
        folder = self.experiment.files("checkpoints")
        for path, (score, role) in found.items():
            try:
                mtime = os.stat(path).st_mtime
            except FileNotFoundError:  # removed by save_top_k since
                continue
            if self._uploaded.get(path) == mtime:
                continue
            score = score.item() if hasattr(score, "item") else score
            folder.upload(path, metadata={"score": score, "monitor": getattr(callback, "monitor", None),
                                          "role": role})
            self._uploaded[path] = mtime


def _escape(prefix: str) -> str:
    """``prefix`` as a glob that matches only itself (``*`` as ``[*]``)."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in prefix)
