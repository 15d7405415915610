"""TensorBoard import of a million scalar events, beside tensorboard's own readers.

    python bench/tb_import.py                 # 10 tags x 100,000 steps (written once under /tmp)
    python bench/tb_import.py --quick         # 10 tags x 200 steps, a smoke run
    python bench/tb_import.py --write bench/results/2026-12-02-tb-import.md

The event file is written once by tensorboard's ``EventFileWriter`` (the
writer under torch's ``SummaryWriter``), with the events ``add_scalar()``
makes (TF1 ``simple_value`` summaries, as most PyTorch code writes them), five tags
``train/*`` and five ``eval/*``, and reused by later runs.  Each round times,
in a rotating order:

- ``ml_dash import``: ``import_tensorboard()`` into a fresh dash root, to
  the last commit (200,000 points in two streams);
- ``read only``: our framing and checksums plus ``Event.FromString`` of
  every record, the reading part of the import, storing nothing;
- ``EventAccumulator``: tensorboard's ``EventAccumulator(size_guidance=
  {SCALARS: 0})``, ``Reload()`` and ``Scalars()`` of every tag;
- ``event_file_loader``: tensorboard's ``EventFileLoader(...).Load()`` over
  the file, the loader under the accumulator's multiplexer (``--no-loader``
  leaves it out: it is the slowest by far).

Medians over the rounds (and the spread), and the median over rounds of each
workload's time over the import's in the same round; the machine is shared.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ml_dash.integrations.tensorboard import import_tensorboard  # noqa: E402
from ml_dash.integrations.tfrecord import RecordReader  # noqa: E402

TAGS = [f"train/metric{i}" for i in range(5)] + [f"eval/metric{i}" for i in range(5)]


def write_events(logdir, steps):
    """The event file of ``len(TAGS) * steps`` scalars, unless it is there already."""
    marker = os.path.join(logdir, f"complete-{steps}")
    if os.path.exists(marker):
        return None
    shutil.rmtree(logdir, ignore_errors=True)
    # The writer under torch's SummaryWriter, given the events add_scalar() makes:
    # the same file, without importing torch.
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    started = time.perf_counter()
    writer = EventFileWriter(logdir, max_queue_size=10_000, flush_secs=3600)
    for step in range(steps):
        for number, tag in enumerate(TAGS):
            value = Summary.Value(tag=tag, simple_value=step * 1e-3 + number)
            writer.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=[value])))
    writer.close()
    open(marker, "w").close()
    return time.perf_counter() - started


def ours(logdir, scratch):
    root = tempfile.mkdtemp(dir=scratch)
    started = time.perf_counter()
    summary = import_tensorboard(logdir, prefix="bench/tb", dash_root=root)
    took = time.perf_counter() - started
    shutil.rmtree(root)
    return took, summary.scalars


def read_only(logdir, scratch):
    from tensorboard.compat.proto.event_pb2 import Event
    started = time.perf_counter()
    values = 0
    for name in _event_files(logdir):
        for record, _ in RecordReader(os.path.join(logdir, name)):
            values += len(Event.FromString(record).summary.value)
    return time.perf_counter() - started, values


def accumulator(logdir, scratch):
    from tensorboard.backend.event_processing import event_accumulator as ea
    started = time.perf_counter()
    acc = ea.EventAccumulator(logdir, size_guidance={ea.SCALARS: 0})
    acc.Reload()
    values = sum(len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"])
    return time.perf_counter() - started, values


def file_loader(logdir, scratch):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    started = time.perf_counter()
    values = 0
    for name in _event_files(logdir):
        values += sum(len(event.summary.value) for event in EventFileLoader(os.path.join(logdir, name)).Load())
    return time.perf_counter() - started, values


def _event_files(logdir):
    return sorted(n for n in os.listdir(logdir) if "tfevents" in n)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps of the 10 tags (default 100,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 steps, one round")
    parser.add_argument("--no-loader", action="store_true", help="leave out event_file_loader")
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "ml_dash-bench-tb"),
                        help="where the event file is kept between runs")
    parser.add_argument("--write", metavar="PATH", help="also write the table as Markdown")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.rounds = 200, 1
    logdir = os.path.join(args.dir, f"logs-{args.steps}")
    built = write_events(logdir, args.steps)
    if built is not None:
        print(f"wrote {len(TAGS) * args.steps:,} scalar events in {built:.1f} s")
    workloads = {"ml_dash import": ours, "read only (our framing + protobuf)": read_only,
                 "EventAccumulator": accumulator}
    if not args.no_loader:
        workloads["event_file_loader"] = file_loader
    times: dict = {name: [] for name in workloads}
    scratch = tempfile.mkdtemp(dir=args.dir)
    names = list(workloads)
    for round_number in range(args.rounds):
        for name in names[round_number % len(names):] + names[:round_number % len(names)]:
            took, values = workloads[name](logdir, scratch)
            assert values == len(TAGS) * args.steps, (name, values)
            times[name].append(took)
            print(f"round {round_number + 1}: {name}: {took:.2f} s", file=sys.stderr, flush=True)
    shutil.rmtree(scratch)
    events = len(TAGS) * args.steps
    lines = [f"TensorBoard import: {events:,} scalar events ({len(TAGS)} tags x {args.steps:,} steps, "
             f"one file of {os.path.getsize(os.path.join(logdir, _event_files(logdir)[0])) / 2**20:.1f} MiB), "
             f"median of {args.rounds} round{'s' if args.rounds > 1 else ''}",
             "", "| workload | seconds (median) | min - max | events/s | time / ml_dash import |",
             "|---|---:|---:|---:|---:|"]
    ours_times = times["ml_dash import"]
    for name, taken in times.items():
        median = statistics.median(taken)
        # per round, against the import of the same round: the machine's load changes between rounds
        ratio = statistics.median(t / o for t, o in zip(taken, ours_times))
        lines.append(f"| {name} | {median:.2f} | {min(taken):.2f} - {max(taken):.2f} | "
                     f"{events / median:,.0f} | {ratio:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        with open(args.write, "w") as f:
            f.write(text + f"\n\nCommand: `python bench/tb_import.py --steps {args.steps} --rounds {args.rounds}`\n")


if __name__ == "__main__":
    main()
