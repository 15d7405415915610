"""Floor: one JSON line per stream per step, appended to a file, flushed at
every commit (no fsync), read back by parsing the file."""

import json
import os

import numpy as np

POINT_API = "scan the file to the k-th train line"


def version():
    return "json (stdlib)"


class Writer:
    def __init__(self, directory, option=None):
        self.file = open(os.path.join(directory, "metrics.jsonl"), "a")

    def log(self, step, train_loss, train_accuracy, eval_loss, eval_accuracy, epoch):
        dumps, write = json.dumps, self.file.write
        write(dumps({"s": "train", "i": step, "loss": train_loss, "accuracy": train_accuracy}) + "\n")
        write(dumps({"s": "eval", "i": step, "loss": eval_loss, "accuracy": eval_accuracy}) + "\n")
        write(dumps({"s": "root", "i": step, "epoch": epoch}) + "\n")

    def commit(self):
        self.file.flush()

    def close(self):
        self.file.close()


class Reader:
    def __init__(self, directory):
        self.path = os.path.join(directory, "metrics.jsonl")

    def _rows(self):
        with open(self.path) as file:
            for line in file:
                if line.endswith("\n"):  # a line still being written is not a point yet
                    yield json.loads(line)

    def counts(self):
        counts = {"train": 0, "eval": 0, "root": 0}
        for row in self._rows():
            counts[row["s"]] += 1
        return counts

    def full(self):
        return np.array([row["loss"] for row in self._rows() if row["s"] == "train"])

    def point(self, k):
        for row in self._rows():
            if row["s"] == "train" and row["i"] == k:
                return row["loss"]
        return None

    def close(self):
        pass
