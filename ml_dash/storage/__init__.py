"""Internal storage engine: LMDB rows plus memory-mapped float64 columns.

Not a public API.  The user-facing modules talk to it through
:class:`Writer` (the one write path), :class:`StoreReader` and the
environment registry (:func:`acquire`, :func:`release`); only this package
imports ``lmdb``.
"""

from .env import Lease, acquire, release
from .keys import EXPERIMENT_KEY, META_DB
from .lock import held_flocks, writer_alive
from .reader import StoreReader
from .writer import Writer

__all__ = ["Writer", "StoreReader", "acquire", "release", "Lease", "META_DB", "EXPERIMENT_KEY",
           "writer_alive", "held_flocks"]
