"""The reference ``ml-dash`` package in local mode (its own venv: same import name).

``{"buffered": True}`` is its default: points queue in memory and a
background thread writes them every 5 s or at close. ``{"buffered": False}``
writes each call to the stream's JSON-lines file at once. It has no commit
of its own; ``commit`` does nothing, so A and B are the same run.
"""

import os

os.environ.setdefault("ML_DASH_NO_VERSION_CHECK", "1")

import numpy as np  # noqa: E402

PREFIX = "bench/peers/run"
POINT_API = "metrics(name).read(start_index=k, limit=1)"
ROOT = None


def version():
    from importlib.metadata import version as installed
    return "ml-dash " + installed("ml-dash")


class Writer:
    def __init__(self, directory, option=None):
        os.environ["ML_DASH_BUFFER_ENABLED"] = "true" if (option or {}).get("buffered", True) else "false"
        from ml_dash import Experiment
        self.exp = Experiment(prefix=PREFIX, dash_root=directory)
        self.exp.run.start()
        metrics = self.exp.metrics
        self.train, self.eval, self.root = metrics("train"), metrics("eval"), metrics

    def log(self, step, train_loss, train_accuracy, eval_loss, eval_accuracy, epoch):
        self.train.log(loss=train_loss, accuracy=train_accuracy)
        self.eval.log(loss=eval_loss, accuracy=eval_accuracy)
        self.root.log(epoch=epoch)

    def commit(self):
        pass

    def close(self):
        self.exp.run.complete()


class Reader:
    def __init__(self, directory):
        os.environ["ML_DASH_BUFFER_ENABLED"] = "false"
        from ml_dash import Experiment
        self.exp = Experiment(prefix=PREFIX, dash_root=directory)
        self.exp.run.start()  # it has no read-only open: reading needs a started experiment
        self.train = self.exp.metrics("train")

    def counts(self):
        found = {}
        for metric in self.train.list_all():
            found[metric["name"]] = int(metric["totalDataPoints"])
        return {"train": found.get("train", 0), "eval": found.get("eval", 0),
                "root": sum(v for k, v in found.items() if k not in ("train", "eval"))}

    def full(self):
        values, start = [], 0
        while True:
            page = self.train.read(start_index=start, limit=10_000)
            values += [point["data"]["loss"] for point in page["data"]]
            start += len(page["data"])
            if not page["hasMore"] or not page["data"]:
                return np.array(values)

    def point(self, k):
        data = self.train.read(start_index=k, limit=1)["data"]
        return data[0]["data"]["loss"] if data else None

    def close(self):
        pass
