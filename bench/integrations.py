"""What each framework integration costs a training step.

    python bench/integrations.py --framework lightning     # or keras, or all
    python bench/integrations.py --quick                   # smoke run

The same training loop (a tiny model on random data, CPU) is run without the
integration and with it, in interleaved rounds.  Lightning: ``Trainer(logger=False)``,
``Trainer(logger=<a Logger that does nothing>)`` (what any logger costs inside
Lightning: it then gathers and converts the step's metrics) and
``Trainer(logger=MLDashLogger(...))``, at ``log_every_n_steps=1`` (the worst case)
and at Lightning's default of 50.  Keras: ``fit(callbacks=[])`` against
``fit(callbacks=[MLDashCallback(...)])``, logging every batch and epoch.  A timing
callback, present in every arm, reads the clock at the end of a warm-up batch and
of the last batch, so setup and teardown (the run's start and close) are not
counted: the figure is the cost per step.  Reported: the median step time of each
arm, the difference in microseconds, and the median of the per-round ratios,
which is what the shared, noisy machine disturbs least.
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

WARMUP = 20  # batches before the clock starts: first-call costs of torch and of the run


def lightning_round(steps, arm, root, every=1):
    """Microseconds per training step of one Lightning fit; ``arm``: ``none``, ``noop``
    or ``ml_dash``, the logger; ``every``: ``log_every_n_steps``."""
    import torch
    from lightning.pytorch import Callback, LightningModule, Trainer
    from lightning.pytorch.loggers import Logger
    from torch.utils.data import DataLoader, TensorDataset

    from ml_dash.integrations.lightning import MLDashLogger

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

    clock = _Clock(steps)

    class Timing(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            clock.tick(batch_idx)

    x = torch.randn((steps + WARMUP) * 4, 8)
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)
    class Noop(Logger):
        name, version = "noop", 0

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    logger = {"none": False, "noop": Noop(), "ml_dash": MLDashLogger("bench/lightning", dash_root=root)}[arm]
    trainer = Trainer(max_epochs=1, logger=logger, log_every_n_steps=every, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, accelerator="cpu",
                      callbacks=[Timing()], default_root_dir=root)
    trainer.fit(Tiny(), data)
    return clock.per_step_us()


def keras_round(steps, arm, root):
    """Microseconds per training batch of one Keras fit."""
    import keras
    import numpy as np

    from ml_dash.integrations.keras import MLDashCallback

    clock = _Clock(steps)

    class Timing(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            clock.tick(batch)

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x = np.random.default_rng(0).normal(size=((steps + WARMUP) * 4, 8)).astype("float32")
    callbacks = [Timing()]
    if arm == "ml_dash":
        callbacks.insert(0, MLDashCallback("bench/keras", dash_root=root))
    model.fit(x, x.sum(axis=1, keepdims=True), batch_size=4, epochs=1, verbose=0, callbacks=callbacks)
    return clock.per_step_us()


class _Clock:
    """The time from the end of batch ``WARMUP - 1`` to the end of the last batch."""

    def __init__(self, steps):
        self.steps = steps
        self.start = self.end = None

    def tick(self, batch):
        if batch == WARMUP - 1:
            self.start = time.perf_counter()
        elif batch == WARMUP - 1 + self.steps:
            self.end = time.perf_counter()

    def per_step_us(self):
        return (self.end - self.start) / self.steps * 1e6


def lightning_every_step(steps, arm, root):
    return lightning_round(steps, arm, root, every=1)


def lightning_default(steps, arm, root):
    return lightning_round(steps, arm, root, every=50)


def direct_cost(framework, calls, root):
    """Microseconds per call of the hook a training step calls, called in a plain loop:
    the integration's own cost, without the framework's noise around it."""
    import numpy as np

    value = np.float32(0.5)  # what frameworks hand over: a numpy or 0-d tensor scalar
    if framework == "lightning":
        from ml_dash.integrations.lightning import MLDashLogger

        logger = MLDashLogger("bench/direct", dash_root=root)

        def step(i):
            logger.log_metrics({"train_loss": float(value), "epoch": 0}, step=i)
            logger.save()
        done = logger.finalize
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
    done(*(("success",) if framework == "lightning" else ()))
    return elapsed / calls * 1e6


# name: (one round's function, its arms: the baselines first, the integration last)
SETUPS = {
    "lightning": [("lightning, log_every_n_steps=1", lightning_every_step, ("none", "noop", "ml_dash")),
                  ("lightning, log_every_n_steps=50", lightning_default, ("none", "noop", "ml_dash"))],
    "keras": [("keras, every batch", keras_round, ("none", "ml_dash"))],
}


def measure(run, arms, rounds, steps):
    """``{arm: [us per step, one per round]}``, the arms interleaved: their order turns
    by one each round, so drift of the machine falls on all of them."""
    times: dict = {arm: [] for arm in arms}
    for arm in arms:
        run(WARMUP, arm, tempfile.mkdtemp())  # imports and first calls, not measured
    for index in range(rounds):
        with tempfile.TemporaryDirectory() as root:
            for arm in arms[index % len(arms):] + arms[:index % len(arms)]:
                times[arm].append(run(steps, arm, root))
    return times


def report(title, times):
    arms = list(times)
    ours = times[arms[-1]]
    lines = [f"{title}: {len(ours)} rounds, median us per step: "
             + ", ".join(f"{arm} {statistics.median(values):.1f}" for arm, values in times.items())]
    for base in arms[:-1]:
        ratio = statistics.median(a / b for a, b in zip(ours, times[base]))
        extra = statistics.median(ours) - statistics.median(times[base])
        lines.append(f"    {arms[-1]} against {base}: {extra:+.1f} us per step, "
                     f"median ratio {ratio:.4f} ({(ratio - 1) * 100:+.2f}%)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=[*SETUPS, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=400, help="measured steps per fit")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 30 steps: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps = 3, 30
    frameworks = list(SETUPS) if args.framework == "all" else [args.framework]
    for framework in frameworks:
        direct = []
        for _ in range(max(3, args.rounds // 3)):
            with tempfile.TemporaryDirectory() as root:
                direct.append(direct_cost(framework, args.steps * 10, root))
        print(f"{framework}: the hook of one step called alone: median {statistics.median(direct):.1f} us "
              f"(min {min(direct):.1f}, max {max(direct):.1f}), {len(direct)} rounds", flush=True)
        for title, run, arms in SETUPS[framework]:
            print(report(title, measure(run, arms, args.rounds, args.steps)), flush=True)


if __name__ == "__main__":
    main()
