"""Hugging Face Transformers: a ``TrainerCallback`` that records a ``Trainer``'s run.

::

    from ml_dash.integrations.transformers import MLDashCallback

    trainer = Trainer(model, args, train_dataset=train, eval_dataset=val,
                      callbacks=[MLDashCallback(prefix="alice/nlp/bert-tiny")])
    trainer.train()

What lands in the run:

- params, at ``on_train_begin``: ``TrainingArguments.to_dict()`` under ``args.`` and the model's
  ``config.to_dict()`` under ``model.``, nested dicts opened into dotted keys
  (``model.id2label.0``).  Kept: None, bool, int, float, str, numpy scalars and one-element
  tensors, and lists or tuples of these.  Any other value (an object, a dtype, a list holding
  one) is left out, and the left-out keys are named in one ``warn`` line of the run's logs:
  a repr is no parameter one can filter runs by, and an address in it changes every launch.
- metrics, at ``on_log``: a key starting ``eval_`` goes to the ``eval`` stream without that
  prefix (``eval_loss`` is ``loss`` there), one starting ``test_`` to ``test``, the others to
  ``train``.  Each point also holds ``global_step`` and ``epoch``, so a stream can be plotted
  against either.  Strings are stored as they are (they have no column); a value that cannot
  be stored is left out of its point, with a warning once per key.
- a log line per checkpoint (``on_save``), naming its folder; ``on_evaluate`` and ``on_save``
  commit what is staged, so the metrics of a saved checkpoint are on disk with it.
- the status: ``COMPLETED`` at ``on_train_end``.  The Trainer has no hook for a training that
  raises, so a failure is seen another way: a run this callback opened and whose training
  never reached ``on_train_end`` is closed ``FAILED`` when the interpreter exits (with the
  exception and its traceback when it was uncaught; ``CANCELLED`` after Ctrl-C or SIGTERM),
  or when the same callback begins training again.  A run opened by the caller
  (``with exp.run:`` around ``trainer.train()``) is the caller's to close: the ``with``
  records ``FAILED`` with the exception at once.

Only the main process writes (``state.is_world_process_zero``); on the other ranks of a
distributed run the callback does nothing.

``report_to="ml_dash"`` is not possible: the Trainer looks every name of ``report_to`` up in a
table of its own integrations (``INTEGRATION_TO_CALLBACK`` in
``transformers.integrations.integration_utils``) and raises ``ValueError`` for any other, with
no entry point or registry for a third party.  (Rejected: adding our name to that table when
this module is imported: it changes another library's private state as a side effect of an
import, and the table has moved between modules before.)  Pass the callback in ``callbacks=``,
and ``report_to="none"`` so that no other installed tracker starts too (the default is
``"none"`` since Transformers 5, ``"all"`` before).
"""

from __future__ import annotations

import atexit
import os
import sys
import warnings
from typing import Any

from ..arrays import require
from ..experiment import Experiment

require("transformers", "transformers", "ml_dash.integrations.transformers")

from transformers import TrainerCallback  # noqa: E402 - after require(), which names the extra

__all__ = ["MLDashCallback"]

ROUTES = {"eval_": "eval", "test_": "test"}
"""Key prefixes of the Trainer's logs and the stream each goes to; the rest go to ``train``."""

_LOG_ARGUMENTS = ("_ts", "_flush")  # taken by Stream.log() as its own, not as fields
_LEFT_OUT = object()  # what _storable() returns for a value the store cannot hold
_unfinished: set[MLDashCallback] = set()  # callbacks whose training began and has not ended


class MLDashCallback(TrainerCallback):
    """Record a ``transformers.Trainer``'s params, metrics and status in an ml_dash run.

    ``experiment``: an :class:`~ml_dash.Experiment` to record into; else one is made from
    ``prefix`` (default ``RUN.prefix``), ``dash_root`` and ``experiment_options`` (the keywords
    of ``Experiment``: ``description``, ``tags``...), here, so that a wrong prefix is refused
    at the call.  A run that is not open when training begins is opened by the callback and
    closed by it (``COMPLETED`` at the end of training); a run already open is left to its
    owner.  ``train_stream`` names the stream of the keys no entry of ``routes`` (key prefix
    to stream name, default :data:`ROUTES`) claims.
    """

    def __init__(self, experiment: Experiment | None = None, prefix: str | None = None,
                 dash_root: str | None = None, *, train_stream: str = "train",
                 routes: dict[str, str] | None = None, log_params: bool = True,
                 **experiment_options: Any) -> None:
        if experiment is not None:
            if not isinstance(experiment, Experiment):
                raise TypeError(f"MLDashCallback(experiment=...) takes an ml_dash Experiment, "
                                f"got {type(experiment).__name__}")
            given = [name for name, value in (("prefix", prefix), ("dash_root", dash_root))
                     if value is not None] + sorted(experiment_options)
            if given:
                raise TypeError(f"MLDashCallback: {given[0]}= names a new experiment, and "
                                f"experiment= was given too; pass one or the other")
        else:
            experiment = Experiment(prefix, dash_root=dash_root, **experiment_options)
        self.experiment = experiment
        self.routes = _checked_routes(ROUTES if routes is None else routes, train_stream)
        self.train_stream = train_stream
        self.log_params = log_params
        self._owned = False  # this callback opened the run, so it closes it
        self._training = False  # on_train_begin came, on_train_end not yet
        self._pid = os.getpid()  # of the process that began training: a forked child closes nothing
        self._warned: set[str] = set()  # reprs of the keys left out, warned once each

    # -- the Trainer's events ------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self._training:
            self._close_unfinished("this callback began training again")
        exp = self.experiment
        if exp.status != "RUNNING":
            exp.run.start()
            self._owned = True
        self._training = True
        self._pid = os.getpid()
        _unfinished.add(self)
        if self.log_params:
            self._set_params(args, model)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        points = self._points(logs, state)
        if not points:  # nothing storable: no launch opened for it
            return
        if self.experiment.status == "RUNNING":
            self._log(points)
        else:  # trainer.evaluate() or trainer.log() outside train(): a short launch of the run
            with self.experiment.run:
                self._log(points)

    def on_evaluate(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.experiment.status == "RUNNING":
            self.experiment.flush()

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.experiment.status != "RUNNING":
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):
            self.experiment.logs.info("checkpoint saved", step=state.global_step,
                                      path=os.path.abspath(folder))
        self.experiment.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self._training = False
        _unfinished.discard(self)
        if self._owned:
            self._owned = False
            self.experiment.run.complete()

    # -- what is stored --------------------------------------------------------------

    def _set_params(self, args, model):
        params: dict[str, Any] = {}
        left_out: list[str] = []
        _flatten("args", args.to_dict(), params, left_out)
        config_dict = getattr(getattr(model, "config", None), "to_dict", None)
        if callable(config_dict):  # a PreTrainedModel's config; a plain torch module has none
            _flatten("model", config_dict(), params, left_out)
        params_of = self.experiment.params
        try:
            params_of.set(**params)
        except (TypeError, ValueError):  # refused whole (a key past LMDB's limit...): key by key
            for key, value in params.items():
                try:
                    params_of.set(**{key: value})
                except (TypeError, ValueError):
                    left_out.append(key)
        if left_out:
            self.experiment.logs.warn("transformers: params left out, their values cannot be "
                                      "stored", keys=sorted(left_out))

    def _points(self, logs: dict, state) -> dict[str, dict]:
        """``{stream: fields}`` of one of the Trainer's logs (see the module's docstring)."""
        steps: dict[str, Any] = {"global_step": state.global_step}
        epoch = logs.get("epoch", state.epoch)
        if epoch is not None:
            steps["epoch"] = epoch
        points: dict[str, dict] = {}
        for key, value in logs.items():
            if key == "epoch":
                continue
            if not isinstance(key, str) or not key or key in _LOG_ARGUMENTS:
                self._warn_left_out(key, value, None, "as a key")
                continue
            stream, name = self._route(key)
            stored = _storable(value)
            if stored is _LEFT_OUT:
                self._warn_left_out(key, value, stream)
                continue
            points.setdefault(stream, dict(steps))[name] = stored
        return points

    def _route(self, key: str) -> tuple[str, str]:
        for start, stream in self.routes.items():
            if key.startswith(start) and len(key) > len(start):
                return stream, key[len(start):]
        return self.train_stream, key

    def _log(self, points):
        metrics = self.experiment.metrics
        for stream, fields in points.items():
            try:
                metrics(stream).log(**fields)
            except (TypeError, ValueError) as exc:  # a key the store refuses: the point is left out
                warnings.warn(f"MLDashCallback: a point of the {stream!r} stream was left out: "
                              f"{exc}", stacklevel=2)

    def _warn_left_out(self, key, value, stream, what=None):
        if repr(key) not in self._warned:
            self._warned.add(repr(key))
            what = what or f"as a {type(value).__name__}"
            where = f" of the {stream!r} stream" if stream else ""
            warnings.warn(f"MLDashCallback: the Trainer logged {key!r} {what}, which ml_dash "
                          f"cannot store; it is left out{where}", stacklevel=3)

    # -- a training that did not end -------------------------------------------------

    def _close_unfinished(self, why: str, error: BaseException | None = None) -> None:
        """Close as ``FAILED`` (``CANCELLED`` for an interrupt) the run this callback opened
        for a training that never reached ``on_train_end``."""
        self._training = False
        _unfinished.discard(self)
        if not self._owned or self.experiment.status != "RUNNING":
            return
        self._owned = False
        run = self.experiment.run
        if isinstance(error, KeyboardInterrupt):
            run.cancel()
            return
        if error is None:
            self.experiment.logs.error(f"transformers: training ended before on_train_end ({why})")
        run.fail(error if isinstance(error, BaseException) else None)


def _checked_routes(routes, train_stream):
    if not isinstance(train_stream, str) or not train_stream:
        raise TypeError(f"MLDashCallback(train_stream=...) must be a non-empty str, got "
                        f"{type(train_stream).__name__} {train_stream!r}")
    if not isinstance(routes, dict):
        raise TypeError(f"MLDashCallback(routes=...) must be a dict of key prefix to stream name, "
                        f"got {type(routes).__name__}")
    for start, stream in routes.items():
        for what, text in (("key prefix", start), ("stream name", stream)):
            if not isinstance(text, str) or not text:
                raise TypeError(f"MLDashCallback(routes=...): the {what} {text!r} of the route "
                                f"{start!r}: {stream!r} must be a non-empty str")
    return dict(routes)


def _storable(value: Any) -> Any:
    """``value`` as the store holds it, or ``_LEFT_OUT``: None, bool, int, float and str as they
    are, numpy scalars and one-element tensors as Python numbers, lists and tuples of these as
    lists, dicts of these with str keys as dicts."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_storable(item) for item in value]
        return _LEFT_OUT if any(item is _LEFT_OUT for item in items) else items
    if isinstance(value, dict):
        if not all(isinstance(key, str) and key for key in value):
            return _LEFT_OUT
        fields = {key: _storable(item) for key, item in value.items()}
        return _LEFT_OUT if any(item is _LEFT_OUT for item in fields.values()) else fields
    item = getattr(value, "item", None)
    if callable(item) and _numel(value) == 1:
        number = item()
        if number is None or isinstance(number, (bool, int, float, str)):
            return number
    return _LEFT_OUT


def _numel(value):
    """Elements of a numpy value or a tensor (``size`` is an int for numpy, a method for torch)."""
    size = getattr(value, "size", None)
    if isinstance(size, int):
        return size
    numel = getattr(value, "numel", None)
    return numel() if callable(numel) else None


def _flatten(prefix: str, mapping: dict, out: dict, left_out: list) -> None:
    """Put the leaves of ``mapping`` into ``out`` under dotted keys below ``prefix``; the keys of
    values that cannot be stored go to ``left_out``."""
    for key, value in mapping.items():
        if not isinstance(key, (str, int)) or isinstance(key, bool) or key == "":
            left_out.append(f"{prefix}.{key!r}")
            continue
        name = f"{prefix}.{key}"
        if isinstance(value, dict) and value:
            _flatten(name, value, out, left_out)
            continue
        stored = _storable(value)
        if stored is _LEFT_OUT or isinstance(stored, dict):  # an empty dict holds no parameter
            if stored is _LEFT_OUT:
                left_out.append(name)
            continue
        out[name] = stored


@atexit.register
def _close_unfinished_runs():
    """At exit, the runs of trainings that never ended: ``FAILED``, with the uncaught exception
    if that is how the program ended.

    Registered after ml_dash's own exit handler, so it runs first (atexit runs last in, first
    out): that one would close such a run ``COMPLETED`` when the program caught the exception
    and went on to end normally.
    """
    error = getattr(sys, "last_value", None)
    for callback in [c for c in _unfinished if c._pid == os.getpid()]:
        try:
            callback._close_unfinished("the program exited", error)
        except Exception as exc:  # report, and keep closing the others
            print(f"ml_dash: could not close {callback.experiment.prefix} at exit: {exc}",
                  file=sys.stderr)
