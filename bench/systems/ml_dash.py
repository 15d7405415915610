"""ml_dash, this project: default durability, or ``{"sync_interval": 0}``
(fsync at every flush). A commit is ``metrics.flush()``, one transaction."""


import numpy as np

import ml_dash

PREFIX = "bench/peers/run"
POINT_API = "metrics(name).column(key, k, k + 1)[0]"


def version():
    return "ml_dash " + ml_dash.__version__


class Writer:
    def __init__(self, directory, option=None):
        self.exp = ml_dash.Experiment(prefix=PREFIX, dash_root=directory, **(option or {}))
        self.exp.run.start()
        self.train, self.eval, self.root = self.exp.metrics("train"), self.exp.metrics("eval"), self.exp.metrics

    def log(self, step, train_loss, train_accuracy, eval_loss, eval_accuracy, epoch):
        self.train.log(loss=train_loss, accuracy=train_accuracy)
        self.eval.log(loss=eval_loss, accuracy=eval_accuracy)
        self.root.log(epoch=epoch)

    def commit(self):
        self.root.flush()

    def close(self):
        self.exp.run.complete()


class Reader:
    def __init__(self, directory):
        self.view = ml_dash.load(PREFIX, dash_root=directory)
        self.train = self.view.metrics("train")

    def counts(self):
        metrics = self.view.metrics
        return {"train": len(self.train), "eval": len(metrics("eval")), "root": len(metrics)}

    def full(self):
        return np.array(self.train.column("loss"))

    def point(self, k):
        return self.train.column("loss", k, k + 1)[0]

    def close(self):
        self.view.close()
