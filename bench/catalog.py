"""What is benchmarked: every system and configuration, in table order.

Variant A commits every step, variant B every 100 steps; a system with no
commit of its own (it writes on its own schedule) runs once and is listed
under both. ``steps`` caps N for systems too slow for the full workload;
such rows are marked in the report.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    key: str                 # unique id, also the cache file name
    label: str               # the row's name in the table
    module: str              # adapter in bench/systems/
    variant: str             # "A", "B" or "A/B"
    commit_every: int
    venv: str = None         # peer venv under bench/.venvs/, None for the project's own
    option: dict = None      # passed to the adapter's Writer
    steps: int = None        # cap on N for slow systems
    reads: bool = True       # can be read back through a public API
    live: bool = True        # try a second process reading while this one writes
    kind: str = "peer"       # "floor", "ml_dash" or "peer"
    env: dict = field(default_factory=dict)
    note: str = ""


def _floor(key, label, module, variant, every, **extra):
    return Config(key, label, module, variant, every, kind="floor", **extra)


CONFIGS = [
    _floor("list", "floor: list append of kwargs", "floor_list", "A/B", 1, reads=False, live=False),
    _floor("lmdb-A", "floor: py-lmdb, marshal, sync=False", "floor_lmdb", "A", 1),
    _floor("lmdb-B", "floor: py-lmdb, marshal, sync=False", "floor_lmdb", "B", 100),
    _floor("jsonl-A", "floor: JSON lines, flush", "floor_jsonl", "A", 1),
    _floor("jsonl-B", "floor: JSON lines, flush", "floor_jsonl", "B", 100),
    _floor("memmap-A", "floor: numpy memmap, 5 columns", "floor_memmap", "A", 1),
    _floor("memmap-B", "floor: numpy memmap, 5 columns", "floor_memmap", "B", 100),
    Config("ml_dash-A", "ml_dash (default durability)", "ml_dash", "A", 1, kind="ml_dash"),
    Config("ml_dash-B", "ml_dash (default durability)", "ml_dash", "B", 100, kind="ml_dash"),
    Config("ml_dash-sync0-A", "ml_dash, sync_interval=0 (fsync per flush)", "ml_dash", "A", 1,
           option={"sync_interval": 0}, steps=10_000, kind="ml_dash"),
    Config("ml_dash-sync0-B", "ml_dash, sync_interval=0 (fsync per flush)", "ml_dash", "B", 100,
           option={"sync_interval": 0}, kind="ml_dash"),
    Config("ref-buffered", "reference ml-dash, local, buffered (default)", "ref_ml_dash", "A/B", 1,
           venv="ref_ml_dash", option={"buffered": True},
           note="writes on its own background timer; no commit per step"),
    Config("ref-unbuffered", "reference ml-dash, local, unbuffered", "ref_ml_dash", "A/B", 1,
           venv="ref_ml_dash", option={"buffered": False}, steps=5_000,
           note="every log call is written at once"),
    Config("mlflow-A", "MLflow, SQLite store, log_metrics per step", "mlflow_peer", "A", 1,
           venv="mlflow", option={"batch": False}, steps=1_000),
    Config("mlflow-B", "MLflow, SQLite store, log_batch per 100 steps", "mlflow_peer", "B", 100,
           venv="mlflow", option={"batch": True}, steps=10_000),
    Config("tensorboard-A", "TensorBoard (tensorboardX write, flush)", "tensorboard_peer", "A", 1,
           venv="tensorboard", steps=10_000),
    Config("tensorboard-B", "TensorBoard (tensorboardX write, flush)", "tensorboard_peer", "B", 100,
           venv="tensorboard"),
    Config("aim", "Aim, Run.track x5 per step", "aim_peer", "A/B", 1, venv="aim", steps=10_000,
           note="writes as it goes; no commit of its own"),
    Config("trackio", "trackio, log per step", "trackio_peer", "A/B", 1, venv="trackio",
           steps=20_000, note="queues in memory and writes on its own schedule; no fsync"),
    Config("wandb", "wandb offline, log per step", "wandb_peer", "A/B", 1, venv="wandb", steps=20_000,
           reads=False, live=False, note="no public API reads an offline run back"),
]


def select(systems=None, kinds=None):
    """Configs whose key, module or venv starts with one of ``systems``, and whose kind is in ``kinds``."""
    chosen = []
    for config in CONFIGS:
        if kinds and config.kind not in kinds:
            continue
        names = (config.key, config.module, config.venv or "", config.kind)
        if systems and not any(name.startswith(tuple(systems)) for name in names):
            continue
        chosen.append(config)
    return chosen
