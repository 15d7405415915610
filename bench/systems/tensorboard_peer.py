"""TensorBoard event files: written with tensorboardX's ``SummaryWriter``
(``flush()`` per commit), read with tensorboard's ``EventAccumulator``
with no downsampling (``size_guidance={"scalars": 0}``); opening a run
parses its whole file."""

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboardX import SummaryWriter

TAGS = ("train/loss", "train/accuracy", "eval/loss", "eval/accuracy", "epoch")


def version():
    from importlib.metadata import version as installed
    return f"tensorboardX {installed('tensorboardX')}, tensorboard {installed('tensorboard')}"


class Writer:
    def __init__(self, directory, option=None):
        self.writer = SummaryWriter(logdir=directory)

    def log(self, step, *values):
        add = self.writer.add_scalar
        for tag, value in zip(TAGS, values):
            add(tag, value, step)

    def commit(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


class Reader:
    def __init__(self, directory):
        self.events = EventAccumulator(directory, size_guidance={"scalars": 0})
        self.events.Reload()

    def counts(self):
        tags = set(self.events.Tags()["scalars"])
        return {name: len(self.events.Scalars(tag)) if tag in tags else 0
                for name, tag in (("train", "train/loss"), ("eval", "eval/loss"), ("root", "epoch"))}

    def full(self):
        return np.array([event.value for event in self.events.Scalars("train/loss")])

    def point(self, k):
        raise NotImplementedError("no API: EventAccumulator parses the whole file first")

    def close(self):
        pass
