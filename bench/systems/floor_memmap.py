"""Floor: five float64 columns in numpy memory maps, grown by doubling; a
commit stores the row count in an 8-byte map of its own (no msync: like ml_dash's default, the pages
reach the disk when the OS writes them, and readers share them at once)."""

import os

import numpy as np

COLUMNS = ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy", "epoch")
POINT_API = "memmap[k]"


def version():
    return "numpy " + np.__version__


class Writer:
    def __init__(self, directory, option=None):
        self.directory = directory
        self.count = 0
        self.capacity = 0
        self.maps = []
        self.header = np.memmap(os.path.join(directory, "count.i64"), dtype=np.int64, mode="w+", shape=(1,))
        self._grow(1 << 16)

    def _grow(self, capacity):
        self.maps = []
        for name in COLUMNS:
            path = os.path.join(self.directory, name + ".f64")
            with open(path, "ab") as file:
                file.truncate(capacity * 8)
            self.maps.append(np.memmap(path, dtype=np.float64, mode="r+", shape=(capacity,)))
        self.capacity = capacity

    def log(self, step, *values):
        if self.count == self.capacity:
            self._grow(self.capacity * 2)
        row = self.count
        for column, value in zip(self.maps, values):
            column[row] = value
        self.count = row + 1

    def commit(self):
        self.header[0] = self.count

    def close(self):
        self.commit()
        self.maps = []
        self.header = None


class Reader:
    def __init__(self, directory):
        self.count = int(np.fromfile(os.path.join(directory, "count.i64"), dtype=np.int64)[0])
        self.loss = np.memmap(os.path.join(directory, "train_loss.f64"), dtype=np.float64, mode="r")

    def counts(self):
        return {"train": self.count, "eval": self.count, "root": self.count}

    def full(self):
        return np.array(self.loss[:self.count])

    def point(self, k):
        return float(self.loss[k])

    def close(self):
        self.loss = None
