"""Floor: append each call's keyword dict to a Python list (no storage at all)."""

import sys


def version():
    return "CPython " + sys.version.split()[0]


class Writer:
    def __init__(self, directory, option=None):
        self.rows = []

    def log(self, step, train_loss, train_accuracy, eval_loss, eval_accuracy, epoch):
        append = self.rows.append
        append({"loss": train_loss, "accuracy": train_accuracy})
        append({"loss": eval_loss, "accuracy": eval_accuracy})
        append({"epoch": epoch})

    def commit(self):
        pass

    def close(self):
        pass
