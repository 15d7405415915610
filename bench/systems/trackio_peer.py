"""trackio: ``trackio.log`` once per step with all five metrics, its storage
directory pointed at the run's folder through ``TRACKIO_DIR``. It queues
points in memory and writes them to SQLite on its own schedule, without
fsync; system-metric logging is turned off so only the workload is timed.
Read back with ``SQLiteStorage.get_metric_values``, the call behind its
``trackio get metric`` command."""

import os

import numpy as np

PROJECT, RUN = "bench", "run"
POINT_API = "SQLiteStorage.get_metric_values(project, run, key, step=k)"


def version():
    from importlib.metadata import version as installed
    return "trackio " + installed("trackio")


def _point_at(directory):
    os.environ["TRACKIO_DIR"] = directory  # read when trackio is first imported


class Writer:
    def __init__(self, directory, option=None):
        _point_at(directory)
        import trackio
        self.trackio = trackio
        trackio.init(project=PROJECT, name=RUN, auto_log_cpu=False, auto_log_gpu=False, embed=False)

    def log(self, step, train_loss, train_accuracy, eval_loss, eval_accuracy, epoch):
        self.trackio.log({"train/loss": train_loss, "train/accuracy": train_accuracy,
                          "eval/loss": eval_loss, "eval/accuracy": eval_accuracy, "epoch": epoch},
                         step=step)

    def commit(self):
        pass

    def close(self):
        self.trackio.finish()


class Reader:
    def __init__(self, directory):
        _point_at(directory)
        from trackio.sqlite_storage import SQLiteStorage
        self.storage = SQLiteStorage

    def _values(self, key, **where):
        return self.storage.get_metric_values(PROJECT, RUN, key, **where)

    def counts(self):
        return {name: len(self._values(key))
                for name, key in (("train", "train/loss"), ("eval", "eval/loss"), ("root", "epoch"))}

    def full(self):
        rows = sorted(self._values("train/loss"), key=lambda row: row["step"])
        return np.array([row["value"] for row in rows])

    def point(self, k):
        rows = self._values("train/loss", step=k)
        return rows[0]["value"] if rows else None

    def close(self):
        pass
