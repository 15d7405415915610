"""wandb in offline mode: ``run.log`` once per step with all five metrics.
It hands points to a helper process that writes its own binary format;
there is no public API to read an offline run back, so it is write only.
System-metric sampling and console capture are off so only the workload
is timed."""


def version():
    from importlib.metadata import version as installed
    return "wandb " + installed("wandb")


class Writer:
    def __init__(self, directory, option=None):
        import wandb
        self.run = wandb.init(mode="offline", dir=directory, project="bench",
                              settings=wandb.Settings(x_disable_stats=True, console="off"))

    def log(self, step, train_loss, train_accuracy, eval_loss, eval_accuracy, epoch):
        self.run.log({"train/loss": train_loss, "train/accuracy": train_accuracy,
                      "eval/loss": eval_loss, "eval/accuracy": eval_accuracy, "epoch": epoch}, step=step)

    def commit(self):
        pass

    def close(self):
        self.run.finish()
