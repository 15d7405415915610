"""What MLDashCallback costs a Transformers training step.

    python bench/integrations_transformers.py               # 20 rounds of 2 x 100 steps
    python bench/integrations_transformers.py --quick       # smoke run
    python bench/integrations_transformers.py --write bench/results/DATE-integrations-transformers.md

Workload: a tiny randomly initialised BERT (hidden size 32, 2 layers), batches of 8 sequences
of 32 tokens, CPU, ``logging_steps=1``: every step is logged, the worst case for a logger.
Each round trains the same model (same seed, same data) twice, with the callback and without
it, in alternating order, on the same Trainer setup; the machine is shared and noisy, so every
figure is a median over rounds, and the overhead is the median of the per-round ratios.

Two measures:

- the interval between consecutive ``on_step_begin`` events (a whole step: forward, backward,
  optimizer, the logging and every callback), after ``--warmup`` steps, with and without; in
  wall time, and in the process's CPU time (every thread of it, so the background commits
  count), which other processes on a loaded machine disturb far less;
- in a third training of each round, the callback records the logs of every other step only:
  the steps whose log it recorded against the steps whose log it did not, side by side under
  the same load (background commits fall on both alike);
- the time spent inside MLDashCallback itself, taken by timing callbacks placed just before
  and just after it in the Trainer's list: per logged step (``on_log``), and once per run
  (``on_train_begin``: opening the run and storing the params; ``on_train_end``: closing it).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ml_dash.integrations.transformers import MLDashCallback  # noqa: E402


class Clock(transformers.TrainerCallback):
    """Records ``perf_counter()`` at every event it is given, by name."""

    def __init__(self):
        self.times = {}

    def _mark(self, event):
        self.times.setdefault(event, []).append(time.perf_counter())

    def on_train_begin(self, *args, **kwargs):
        self._mark("train_begin")

    def on_step_begin(self, *args, **kwargs):
        self._mark("step_begin")
        self.times.setdefault("step_begin_cpu", []).append(time.process_time())

    def on_log(self, *args, **kwargs):
        self._mark("log")

    def on_train_end(self, *args, **kwargs):
        self._mark("train_end")


class ClockBefore(Clock):
    """Placed before MLDashCallback (the Trainer warns of two callbacks of one class)."""


class ClockAfter(Clock):
    """Placed after it."""


class EveryOtherLog(MLDashCallback):
    """MLDashCallback recording only the logs of even steps: in one training, steps with and
    without its work alternate, so both kinds see the same load of the machine."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step % 2 == 0:
            super().on_log(args, state, control, logs=logs, **kwargs)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, size, length):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 1000, (size, length), generator=generator)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        return {"input_ids": self.ids[index], "labels": int(index % 2)}


def train_once(work, steps, with_callback, kind=MLDashCallback):
    """``({"wall": step intervals, "cpu": their CPU time}, {event: seconds inside
    MLDashCallback})`` of one training."""
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=1000))
    args = transformers.TrainingArguments(
        output_dir=os.path.join(work, "out"), max_steps=steps, logging_steps=1,
        save_strategy="no", eval_strategy="no", per_device_train_batch_size=8, report_to="none",
        use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0)
    before, after = ClockBefore(), ClockAfter()
    callbacks = [before]
    if with_callback:
        shutil.rmtree(os.path.join(work, "dash"), ignore_errors=True)
        callbacks.append(kind(prefix="bench/hf/tiny", dash_root=os.path.join(work, "dash")))
    callbacks.append(after)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(steps * 8, 32),
                                   callbacks=callbacks)
    trainer.remove_callback(transformers.PrinterCallback)  # no print of every log, either way
    trainer.train()
    intervals = {clock: [b - a for a, b in zip(starts, starts[1:])]
                 for clock, starts in (("wall", before.times["step_begin"]),
                                       ("cpu", before.times["step_begin_cpu"]))}
    inside = {event: [b - a for a, b in zip(before.times[event], after.times[event])]
              for event in ("train_begin", "log", "train_end")}
    return intervals, inside


def paired_ratio(work, steps, warmup):
    """Median step interval whose log MLDashCallback recorded over the median of those it did
    not, in one training (interval ``j`` holds step ``j + 1`` and its log)."""
    intervals = train_once(work, steps, True, EveryOtherLog)[0]["wall"][warmup:]
    logged = [t for j, t in enumerate(intervals, warmup) if (j + 1) % 2 == 0]
    skipped = [t for j, t in enumerate(intervals, warmup) if (j + 1) % 2 == 1]
    return statistics.median(logged) / statistics.median(skipped)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10, help="first steps of each run left out")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 10 steps")
    parser.add_argument("--write", metavar="PATH", help="also write the table as markdown")
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.steps, options.warmup = 2, 10, 3
    torch.set_num_threads(1)  # steadier figures on a shared machine than threads contending
    work = tempfile.mkdtemp(prefix="ml_dash-bench-hf-")
    steps = {(clock, side): [] for clock in ("wall", "cpu") for side in (True, False)}
    ratios: dict[str, list] = {"wall": [], "cpu": []}
    on_log, begin, end, paired = [], [], [], []
    try:
        for round_ in range(options.rounds):
            medians = {}
            for with_callback in ((True, False) if round_ % 2 else (False, True)):
                intervals, inside = train_once(work, options.steps, with_callback)
                for clock, values in intervals.items():
                    medians[clock, with_callback] = statistics.median(values[options.warmup:])
                    steps[clock, with_callback].append(medians[clock, with_callback])
                if with_callback:
                    on_log.append(statistics.median(inside["log"][options.warmup:]))
                    begin.extend(inside["train_begin"])
                    end.extend(inside["train_end"])
            for clock in ratios:
                ratios[clock].append(medians[clock, True] / medians[clock, False])
            paired.append(paired_ratio(work, options.steps, options.warmup))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step = statistics.median(steps["wall", False])
    rows = []
    for clock, what in (("wall", "training step"), ("cpu", "CPU time of a training step")):
        rows += [
            (f"{what} without the callback", f"{statistics.median(steps[clock, False]) * 1e3:.2f} ms", ""),
            (f"{what} with it", f"{statistics.median(steps[clock, True]) * 1e3:.2f} ms",
             f"{(statistics.median(ratios[clock]) - 1) * 100:+.2f} % (median of per-round ratios; "
             f"rounds {min(ratios[clock]) - 1:+.1%} .. {max(ratios[clock]) - 1:+.1%})")]
    rows += [
        ("steps alternately recorded and not, in one training", "",
         f"{(statistics.median(paired) - 1) * 100:+.2f} % (median of per-run ratios; "
         f"runs {min(paired) - 1:+.1%} .. {max(paired) - 1:+.1%})"),
        ("inside the callback per logged step (on_log)", f"{statistics.median(on_log) * 1e6:.0f} us",
         f"{statistics.median(on_log) / step * 100:.2f} % of a step"),
        ("once per run: on_train_begin (open, params)", f"{statistics.median(begin) * 1e3:.1f} ms", ""),
        ("once per run: on_train_end (close, fsync)", f"{statistics.median(end) * 1e3:.1f} ms", ""),
    ]
    command = "python bench/integrations_transformers.py " + " ".join(sys.argv[1:])
    lines = [f"MLDashCallback overhead: {options.rounds} rounds x {options.steps} steps, "
             f"transformers {transformers.__version__}, torch {torch.__version__}, "
             f"`{command.strip()}`", "",
             "| measure | median | overhead |", "|---|---|---|",
             *(f"| {name} | {value} | {share} |" for name, value, share in rows)]
    print("\n".join(lines))
    if options.write:
        with open(options.write, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
