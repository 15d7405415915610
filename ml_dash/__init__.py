"""ml_dash: an embedded, local experiment-metrics store.

Log from a training loop, read back from anywhere, with no server::

    from ml_dash import Experiment, load

    with Experiment(prefix="alice/proj/exp", dash_root=".dash").run as exp:
        for step in range(100):
            exp.metrics("train").log(loss=1 / (step + 1), accuracy=step / 100)
            exp.metrics.log(step=step).flush()

    view = load("alice/proj/exp", dash_root=".dash")
    losses = view.metrics("train").column("loss")    # numpy, memory-mapped
    page = view.metrics("train").read(start_index=10, limit=5)

Storage: one LMDB environment per experiment, one sub-database per stream,
and a memory-mapped float64 column per numeric key (see docs/storage.md).
"""

from .analysis.export import export
from .analysis.listing import list_experiments
from .analysis.plotting import plot
from .analysis.ranges import align
from .analysis.sql import sql
from .analysis.sync import SyncSummary, sync
from .analysis.tables import runs_table
from .annotations import annotate
from .errors import (
    ColumnNotFoundError,
    ConfigurationError,
    CorruptStoreError,
    DatasetError,
    EntryNotFoundError,
    ExperimentError,
    FormatVersionError,
    MLDashError,
    MlDashError,
    RunNotStartedError,
    StorageError,
    StreamLimitError,
    StreamNotFoundError,
    TemplateFieldError,
    WriterLockedError,
)
from .experiment import Experiment, ml_dash_experiment
from .logs import LogBuilder, LogLevel
from .maintenance import CheckReport, check, compact
from .params import ParametersBuilder
from .run import RUN
from .view import ExperimentView, load

__version__ = "0.1.0"

__all__ = [
    "Experiment",
    "ml_dash_experiment",
    "RUN",
    "load",
    "ExperimentView",
    "annotate",
    "ParametersBuilder",
    "LogLevel",
    "LogBuilder",
    "check",
    "compact",
    "CheckReport",
    "list_experiments",
    "align",
    "runs_table",
    "sql",
    "export",
    "plot",
    "sync",
    "SyncSummary",
    "MLDashError",
    "MlDashError",
    "ConfigurationError",
    "TemplateFieldError",
    "StorageError",
    "FormatVersionError",
    "CorruptStoreError",
    "StreamLimitError",
    "ExperimentError",
    "RunNotStartedError",
    "WriterLockedError",
    "StreamNotFoundError",
    "ColumnNotFoundError",
    "EntryNotFoundError",
    "DatasetError",
]
