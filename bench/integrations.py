"""What each framework integration costs a training step.

    python bench/integrations.py --framework lightning     # or keras, or all (default)
    python bench/integrations.py --quick                   # smoke run
    python bench/integrations.py --whole-fits              # also: whole fits against each other

A tiny model trains on random data (CPU, batch size 4: a step of a few ms, so any cost
shows).  Three measurements:

- **alternating steps** (the figure to quote): one fit in which the integration is
  called on every other step only (the other steps run the same loop without it), and a
  timing callback takes the time of every step.  Each step with the integration is
  compared with a step beside it, without (the one before and the one after by turns).  Interleaved step by step,
  in one process with the same warm caches, the comparison is what the load of a shared
  machine disturbs least; the same fits with the integration called on no step (a null
  control: the same wrapper, the same parity) give the same figure for nothing, and the
  cost quoted is the median difference with the integration less the null one.  Lightning: an ``MLDashLogger``
  behind a logger that forwards ``log_metrics``/``save`` on even steps
  (``log_every_n_steps=1``: every step logs, the worst case; Lightning's default logs
  one in 50); keras: an ``MLDashCallback`` whose ``on_train_batch_end`` is forwarded on
  even batches.
- **the hook alone**: the integration's per-step call (``log_metrics`` + ``save``, or
  ``on_train_batch_end``) in a plain loop, without the framework around it.
- ``--whole-fits``: whole fits without and with the integration, interleaved rounds,
  the median of the per-round ratios; Lightning's ``logger=False`` and a logger that
  does nothing as baselines (any logger makes Lightning gather and convert the step's
  metrics: that cost is Lightning's).  Noisy on a shared machine: a fit is seconds long.
"""

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "torch")  # keras reads it at import
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WARMUP = 20  # steps before the clock starts: first-call costs of torch and of the run


class StepClock:
    """The time of each step, from the end of one batch to the end of the next, with
    whether the integration ran in it (``used``, set by the alternating wrapper)."""

    def __init__(self):
        self.used = False
        self.last = None
        self.steps = []  # (used, us)
        self.batches = 0

    def tick(self):
        now = time.perf_counter()
        self.batches += 1
        if self.last is not None and self.batches > WARMUP:
            self.steps.append((self.used, (now - self.last) * 1e6))
        self.last = now

    def pairs(self):
        """``us with - us of a step beside it, without``, for each step with the integration;
        the step before and the step after by turns, so that a trend (a fit that warms up)
        cancels.  (Rejected: the mean of both neighbours: the mean of two skewed step times
        sits above their median, which biased every difference by -300 us.)"""
        steps, out = self.steps, []
        for i in range(1, len(steps) - 1):
            used, us = steps[i]
            other = steps[i - 1] if len(out) % 2 else steps[i + 1]
            if used and not other[0]:
                out.append(us - other[1])
        return out

    def plain(self):
        return [us for used, us in self.steps if not used]


# -- lightning ---------------------------------------------------------------------------------


def lightning_fit(steps, logger, root, callbacks=(), every=1):
    """One Lightning fit of ``steps`` batches (after the warm-up)."""
    import torch
    from lightning.pytorch import LightningModule, Trainer
    from torch.utils.data import DataLoader, TensorDataset

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # its tips, at every fit

    class Tiny(LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(8, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    x = torch.randn((steps + WARMUP + 1) * 4, 8)
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)
    trainer = Trainer(max_epochs=1, logger=logger, log_every_n_steps=every, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, accelerator="cpu",
                      callbacks=list(callbacks), default_root_dir=root)
    trainer.fit(Tiny(), data)


def lightning_alternating(steps, root, active=True):
    from lightning.pytorch import Callback
    from lightning.pytorch.loggers import Logger

    from ml_dash.integrations.lightning import MLDashLogger

    clock = StepClock()
    inner = MLDashLogger("bench/lightning", dash_root=root)

    class EveryOtherStep(Logger):
        """``MLDashLogger`` on even steps; on odd ones the same calls do nothing."""
        name, version = inner.name, inner.version
        experiment = property(lambda self: inner.experiment)

        def log_metrics(self, metrics, step=None):
            clock.used = step % 2 == 0
            if clock.used and active:
                inner.log_metrics(metrics, step)

        def save(self):
            if clock.used and active:
                inner.save()

        def log_hyperparams(self, params, *args, **kwargs):
            inner.log_hyperparams(params)

        def finalize(self, status):
            inner.finalize(status)

    class Timing(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            clock.tick()  # before Lightning logs this step: the step's log falls in the next interval

    lightning_fit(steps, EveryOtherStep(), root, [Timing()])
    return clock


def lightning_whole_fit(steps, arm, root):
    from lightning.pytorch import Callback
    from lightning.pytorch.loggers import Logger

    from ml_dash.integrations.lightning import MLDashLogger

    clock = StepClock()

    class Nothing(Logger):
        name, version = "nothing", 0

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    class Timing(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            clock.tick()

    logger = {"logger=False": False, "a logger doing nothing": Nothing(),
              "MLDashLogger": MLDashLogger("bench/lightning", dash_root=root)}[arm]
    lightning_fit(steps, logger, root, [Timing()])
    return statistics.mean(clock.plain())


# -- keras -------------------------------------------------------------------------------------


def keras_fit(steps, callbacks):
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x = np.random.default_rng(0).normal(size=((steps + WARMUP + 1) * 4, 8)).astype("float32")
    model.fit(x, x.sum(axis=1, keepdims=True), batch_size=4, epochs=1, verbose=0, callbacks=callbacks)


def keras_alternating(steps, root, active=True):
    import keras

    from ml_dash.integrations.keras import MLDashCallback

    clock = StepClock()
    inner = MLDashCallback("bench/keras", dash_root=root)

    class Timing(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            clock.tick()  # first in the list: this batch's logging falls in the next interval

    class EveryOtherBatch(keras.callbacks.Callback):
        def set_model(self, model):
            super().set_model(model)
            inner.set_model(model)

        def set_params(self, params):
            super().set_params(params)
            inner.set_params(params)

        def on_train_begin(self, logs=None):
            inner.on_train_begin(logs)

        def on_epoch_begin(self, epoch, logs=None):
            inner.on_epoch_begin(epoch, logs)

        def on_train_batch_end(self, batch, logs=None):
            clock.used = batch % 2 == 0
            if clock.used and active:
                inner.on_train_batch_end(batch, logs)

        def on_epoch_end(self, epoch, logs=None):
            inner.on_epoch_end(epoch, logs)

        def on_train_end(self, logs=None):
            inner.on_train_end(logs)

    keras_fit(steps, [Timing(), EveryOtherBatch()])
    return clock


def keras_whole_fit(steps, arm, root):
    import keras

    from ml_dash.integrations.keras import MLDashCallback

    clock = StepClock()

    class Timing(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            clock.tick()

    callbacks = [Timing()]
    if arm == "MLDashCallback":
        callbacks.append(MLDashCallback("bench/keras", dash_root=root))
    keras_fit(steps, callbacks)
    return statistics.mean(clock.plain())


# -- the hook alone ----------------------------------------------------------------------------


def hook_alone(framework, calls, root):
    """Microseconds per call of the hook a training step calls, in a plain loop."""
    import numpy as np

    value = np.float32(0.5)  # what frameworks hand over: a numpy or a 0-d tensor scalar
    if framework == "lightning":
        from ml_dash.integrations.lightning import MLDashLogger

        logger = MLDashLogger("bench/direct", dash_root=root)

        def step(i):
            logger.log_metrics({"train_loss": float(value), "epoch": 0}, step=i)
            logger.save()

        def done():
            logger.finalize("success")
    else:
        from ml_dash import Experiment
        from ml_dash.integrations.keras import MLDashCallback

        exp = Experiment(prefix="bench/keras/direct", dash_root=root).run.start()
        callback = MLDashCallback(exp)

        def step(i):
            callback.on_train_batch_end(i, {"loss": value, "mae": value})
        done = exp.run.complete
    step(0)
    start = time.perf_counter()
    for i in range(1, calls + 1):
        step(i)
    elapsed = time.perf_counter() - start
    done()
    return elapsed / calls * 1e6


ALTERNATING = {"lightning": lightning_alternating, "keras": keras_alternating}
WHOLE_FITS = {"lightning": (lightning_whole_fit, ("logger=False", "a logger doing nothing", "MLDashLogger")),
              "keras": (keras_whole_fit, ("callbacks=[]", "MLDashCallback"))}


def alternating_report(framework, fits, steps):
    """The fits with the integration on every other step and the null fits, interleaved."""
    pairs, null, plain = [], [], []
    for _ in range(fits):
        for active, into in ((True, pairs), (False, null)):
            with tempfile.TemporaryDirectory() as root:
                clock = ALTERNATING[framework](steps, root, active)
            into += clock.pairs()
            plain += clock.plain()
    step, used, noise = statistics.median(plain), statistics.median(pairs), statistics.median(null)
    cost = used - noise
    return (f"{framework}, alternating steps: step {step:.1f} us; the integration costs {cost:+.1f} us "
            f"per step ({cost / step * 100:+.2f}%): {used:+.1f} us with it, {noise:+.1f} us in the null "
            f"control; medians of {len(pairs)} and {len(null)} steps")


def hook_report(framework, rounds, calls):
    times = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as root:
            times.append(hook_alone(framework, calls, root))
    return (f"{framework}, the hook alone: median {statistics.median(times):.1f} us per step "
            f"(min {min(times):.1f}, max {max(times):.1f}, {rounds} rounds of {calls} calls)")


def whole_fits_report(framework, rounds, steps):
    """The arms' fits interleaved, their order turning by one each round."""
    run, arms = WHOLE_FITS[framework]
    times: dict = {arm: [] for arm in arms}
    for index in range(rounds):
        with tempfile.TemporaryDirectory() as root:
            for arm in arms[index % len(arms):] + arms[:index % len(arms)]:
                times[arm].append(run(steps, arm, root))
    ours = times[arms[-1]]
    lines = [f"{framework}, whole fits: {rounds} rounds, mean us per step, median of the rounds: "
             + ", ".join(f"{arm} {statistics.median(values):.1f}" for arm, values in times.items())]
    for base in arms[:-1]:
        ratio = statistics.median(a / b for a, b in zip(ours, times[base]))
        lines.append(f"    {arms[-1]} against {base}: median ratio {ratio:.4f} ({(ratio - 1) * 100:+.2f}%)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=[*ALTERNATING, "all"], default="all")
    parser.add_argument("--fits", type=int, default=5, help="alternating fits")
    parser.add_argument("--steps", type=int, default=1000, help="measured steps per fit")
    parser.add_argument("--whole-fits", type=int, default=0, metavar="ROUNDS",
                        help="also compare whole fits, in this many rounds")
    parser.add_argument("--quick", action="store_true", help="one short fit of each: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.fits, args.steps, args.whole_fits = 1, 30, min(args.whole_fits, 1)
    frameworks = list(ALTERNATING) if args.framework == "all" else [args.framework]
    for framework in frameworks:
        print(hook_report(framework, 3 if args.quick else 7, args.steps * 10), flush=True)
        print(alternating_report(framework, args.fits, args.steps), flush=True)
        if args.whole_fits:
            print(whole_fits_report(framework, args.whole_fits, args.steps), flush=True)


if __name__ == "__main__":
    main()
