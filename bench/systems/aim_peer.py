"""Aim: ``Run.track`` five times per step; Aim writes as it goes and has no
commit of its own. A reader must index the run first (what ``aim storage
reindex`` does; otherwise a closed run shows no metrics), then opens it by
its hash. ``values`` is ordered by step hash, not step: the full read uses
``metric.data.numpy()`` (steps sorted) and a point read looks up the step's
hash."""

import os

from aim import Repo, Run
from aim.sdk.index_manager import RepoIndexManager
from aim.storage.context import Context

POINT_API = "metric.values[metric.data.step_hash(k)]"
TRAIN, EVAL = {"subset": "train"}, {"subset": "eval"}


def version():
    from importlib.metadata import version as installed
    return "aim " + installed("aim")


class Writer:
    def __init__(self, directory, option=None):
        self.run = Run(repo=directory, experiment="bench")
        with open(os.path.join(directory, "run_hash"), "w") as file:
            file.write(self.run.hash)

    def log(self, step, train_loss, train_accuracy, eval_loss, eval_accuracy, epoch):
        track = self.run.track
        track(train_loss, name="loss", step=step, context=TRAIN)
        track(train_accuracy, name="accuracy", step=step, context=TRAIN)
        track(eval_loss, name="loss", step=step, context=EVAL)
        track(eval_accuracy, name="accuracy", step=step, context=EVAL)
        track(epoch, name="epoch", step=step)

    def commit(self):
        pass

    def close(self):
        self.run.close()


class Reader:
    def __init__(self, directory):
        with open(os.path.join(directory, "run_hash")) as file:
            run_hash = file.read().strip()
        repo = Repo.from_path(directory)
        RepoIndexManager.get_index_manager(repo).index(run_hash)
        self.run = Run(run_hash, repo=repo, read_only=True)
        self.loss = self.run.get_metric("loss", Context(TRAIN))
        self.values, self.step_hash = self.loss.values, self.loss.data.step_hash

    def counts(self):
        metric = self.run.get_metric
        return {name: len(metric(key, Context(context)).data.numpy()[0])
                for name, key, context in (("train", "loss", TRAIN), ("eval", "loss", EVAL),
                                           ("root", "epoch", {}))}

    def full(self):
        steps, (values, *_) = self.loss.data.numpy()
        return values

    def point(self, k):
        return self.values[self.step_hash(k)]

    def close(self):
        pass  # a read-only Run has nothing to close (its close() fails)
