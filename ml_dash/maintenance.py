"""Verifying and compacting stored experiments: ``ml_dash.check`` and ``ml_dash.compact``."""

from __future__ import annotations

from .paths import parse_prefix
from .storage import CheckReport, check_store, compact_store

__all__ = ["check", "compact", "CheckReport"]


def check(prefix: str, dash_root: str = ".dash", repair: bool = False) -> CheckReport:
    """Verify the stored experiment ``prefix``; returns a :class:`CheckReport`.

    Checks the format version and catalog, that every stream's points are
    numbered 0, 1, 2, ... without gaps, that every point decodes, and that
    every column equals its rows.  Safe while the run is being written (it
    checks what was committed when it started).  Damage is reported, never
    raised: a truncated file, a point that fails its checksum, or LMDB pages
    so broken that reading them kills a process (they are first read in a
    child process for that reason).  ``repair=True`` rewrites
    wrong or missing columns from the rows, which needs the writer lock:
    it raises ``WriterLockedError`` while a writer is live.
    """
    segments, path = parse_prefix(prefix, dash_root)
    return check_store("/".join(segments), path, repair=repair)


def compact(prefix: str, dash_root: str = ".dash") -> tuple[int, int]:
    """Rewrite the experiment's LMDB file without free pages, atomically.

    Returns ``(bytes before, bytes after)``.  Needs the run closed (no live
    writer: ``WriterLockedError`` otherwise) and no reader in any process
    (``ExperimentError`` naming their pids otherwise); a process that opens
    the run while it is compacted waits until the new file is in place.
    """
    segments, path = parse_prefix(prefix, dash_root)
    return compact_store("/".join(segments), path)
