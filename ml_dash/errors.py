"""Exception hierarchy.

Every error raised on purpose by ml_dash derives from :class:`MLDashError`;
where a builtin exception says the same thing, the class derives from it too,
so ``except KeyError`` and ``except ml_dash.StreamNotFoundError`` both work.
These pairs are the package's only classes with two bases (the rest of
ml_dash builds on one base or none).
"""

__all__ = [
    "MLDashError",
    "MlDashError",
    "ConfigurationError",
    "TemplateFieldError",
    "StorageError",
    "ExperimentError",
    "RunNotStartedError",
    "WriterLockedError",
    "StreamNotFoundError",
    "ColumnNotFoundError",
    "FormatVersionError",
    "CorruptStoreError",
    "StreamLimitError",
    "UnstorablePointError",
    "DatasetError",
]


class MLDashError(Exception):
    """Root of every error ml_dash raises on purpose."""


#: The reference package's spelling of the root, so its users' ``except`` clauses work.
MlDashError = MLDashError


class ConfigurationError(MLDashError, ValueError):
    """An option or argument combination that this engine does not support."""


class TemplateFieldError(ConfigurationError, AttributeError):
    """A prefix template names a field that RUN does not have (``{EXP.nmae}``).

    Also an ``AttributeError``: scripts written for the reference catch that
    for an unknown ``{EXP.attr}``.  (The one class with three builtin-derived
    bases: a ``ConfigurationError`` like every bad template, and the builtin
    those scripts expect.)
    """


class StorageError(MLDashError, OSError):
    """The store could not be read or written (disk full, I/O error, map limit).

    Everything committed before the failure stays readable; a failed flush
    leaves its snapshot staged so that calling ``flush()`` again retries it.
    """


class FormatVersionError(StorageError):
    """The store was written in a format version this release cannot read."""


class CorruptStoreError(StorageError):
    """The stored files are damaged (truncated, bytes changed on disk).

    Raised instead of returning wrong data; ``ml_dash.check()`` reports
    what is damaged, and columns (not rows) can be rebuilt with ``repair=True``.
    """


class StreamLimitError(StorageError):
    """A new stream would be more than one experiment can hold.

    Raised by ``metrics(name)`` (or a routed dict) that would create it,
    with nothing of that call staged.  Should a flush still meet one (a
    stream object kept from before the run was reopened), only that
    stream's points are dropped; the rest stays staged for the next
    ``flush()``.  ``stream`` is the store name of that stream (``""`` for
    the root), None when it is not a flush that raised.
    """

    def __init__(self, *args, stream=None):
        super().__init__(*args)
        self.stream = stream


class UnstorablePointError(MLDashError, TypeError):
    """A staged point the store cannot encode (a string with a lone surrogate):
    the flush drops it alone (``data`` is its fields) and keeps the rest staged."""

    def __init__(self, message, data=None):
        super().__init__(message)
        self.data = data


class DatasetError(MLDashError, ValueError):
    """A synced Parquet dataset disagrees with the run it was synced from (it holds
    more points than the run, or parts that overlap or leave a gap)."""


class ExperimentError(MLDashError, RuntimeError):
    """The experiment is in a state that does not allow the call."""


class RunNotStartedError(ExperimentError):
    """The run has not been started (or was already closed)."""


class WriterLockedError(ExperimentError):
    """Another live process is writing this experiment."""


class _NotFoundError(MLDashError, KeyError):
    """A missing stream or column: a ``KeyError`` whose text is the message itself."""

    def __str__(self):  # KeyError.__str__ shows repr(message)
        return str(self.args[0]) if self.args else ""


class StreamNotFoundError(_NotFoundError):
    """The stream has never been written."""


class ColumnNotFoundError(_NotFoundError):
    """The stream has no column under that key."""


class EntryNotFoundError(_NotFoundError):
    """A track (or a slice of it) has no entry at or before the time asked for."""
