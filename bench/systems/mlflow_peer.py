"""MLflow with a SQLite store, through ``MlflowClient``: ``{"batch": False}``
logs each step's five metrics with one ``log_batch`` call (what
``mlflow.log_metrics`` does); ``{"batch": True}`` stages them and sends one
``log_batch`` per commit. Creating the database is setup, timed apart."""

import os
import time

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

KEYS = ("train/loss", "train/accuracy", "eval/loss", "eval/accuracy", "epoch")


def version():
    from importlib.metadata import version as installed
    return "mlflow " + installed("mlflow")


def _uri(directory):
    return "sqlite:///" + os.path.join(directory, "mlflow.db")


class Writer:
    def __init__(self, directory, option=None):
        self.client = MlflowClient(_uri(directory))
        experiment = self.client.create_experiment(
            "bench", artifact_location=os.path.join(directory, "artifacts"))
        self.run_id = self.client.create_run(experiment).info.run_id
        with open(os.path.join(directory, "run_id"), "w") as file:
            file.write(self.run_id)
        self.batch = (option or {}).get("batch", False)
        self.staged = []

    def log(self, step, *values):
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step) for key, value in zip(KEYS, values)]
        if self.batch:
            self.staged += metrics
        else:
            self.client.log_batch(self.run_id, metrics=metrics)

    def commit(self):
        if self.staged:
            self.client.log_batch(self.run_id, metrics=self.staged)
            self.staged = []

    def close(self):
        self.commit()
        self.client.set_terminated(self.run_id)


class Reader:
    def __init__(self, directory):
        self.client = MlflowClient(_uri(directory))
        with open(os.path.join(directory, "run_id")) as file:
            self.run_id = file.read().strip()

    def _history(self, key):
        return sorted(self.client.get_metric_history(self.run_id, key), key=lambda m: m.step)

    def counts(self):
        return {name: len(self._history(key))
                for name, key in (("train", "train/loss"), ("eval", "eval/loss"), ("root", "epoch"))}

    def full(self):
        import numpy as np
        return np.array([m.value for m in self._history("train/loss")])

    def point(self, k):
        raise NotImplementedError("no API: get_metric_history returns every point")

    def close(self):
        pass
