"""The layout of a synced Parquet dataset, and the one way files enter it.

``DEST`` holds two hive-partitioned datasets::

    DEST/metrics/project=<P>/run=<R>/stream=<S>/part-<first>-<last>.parquet
    DEST/runs/project=<P>/run=<R>/run.parquet

``R`` is the run's whole prefix, ``P`` its first two segments (owner and
project), ``S`` the stream's name.  A value is percent-encoded (every byte but
letters, digits and ``_.-~``, so ``/`` is ``%2F`` and ``=`` is ``%3D``): the
encoding that pyarrow, Dask, DuckDB and Spark decode when they read hive
partitions, and reversible.  The root stream, whose name is None, is the hive
null value ``__HIVE_DEFAULT_PARTITION__``, which those readers read as null.
A stream literally named so cannot be told from it by pyarrow (and so
Dask), which decode a value before they compare it with the null's name:
sync leaves such a stream out and says so.

``first`` and ``last`` are the point indices a part holds, zero-padded to 12
digits so that names sort by index.  What ``DEST`` holds of a stream is read
from these names alone: no state file that could disagree with the parts.

Every file is written under a temporary name that starts with ``.`` and ends
in ``.tmp`` (Dask, pyarrow and DuckDB skip it: they read ``*.parquet`` and
ignore hidden files), flushed to disk, and renamed into place, so a part is
either whole or absent, even after a power loss.  The folder is not flushed
after the rename: a rename that a power loss undoes leaves the part absent,
and the next sync writes it again.  (Rejected: an fsync of the folder per
file, which doubled the cost of syncing many small runs for nothing that
the next sync does not redo.)  Only a merge of parts flushes the folder,
before it removes the parts it merged.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote, unquote

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
METRICS = "metrics"
RUNS = "runs"
RUN_FILE = "run.parquet"
_PART = re.compile(r"^part-(\d{12})-(\d{12})\.parquet$")
_TEMPORARY = re.compile(r"^\..*\.tmp$")


def encode_value(value: str | None) -> str:
    """The partition folder value of ``value`` (None: the hive null)."""
    if value is None:
        return HIVE_NULL
    if value == HIVE_NULL:
        raise ValueError(f"{HIVE_NULL!r} is the name of the hive null: readers would read it as None")
    return quote(value, safe="")


def decode_value(encoded: str) -> str | None:
    """The value of a partition folder value: the inverse of :func:`encode_value`."""
    return None if encoded == HIVE_NULL else unquote(encoded, errors="strict")


def project_of(prefix: str) -> str:
    """The project partition of a run: the first two segments of its prefix."""
    return "/".join(prefix.split("/")[:2])


def run_folder(dest: str, kind: str, prefix: str) -> str:
    """``DEST/<kind>/project=<P>/run=<R>`` of the run ``prefix``."""
    return os.path.join(dest, kind, f"project={encode_value(project_of(prefix))}",
                        f"run={encode_value(prefix)}")


def stream_part(stream: str | None) -> str:
    """The folder name of the parts of ``stream`` (None: the root stream) in its run's folder."""
    return f"stream={encode_value(stream)}"


def part_name(first: int, last: int) -> str:
    """The file name of the part holding points ``first`` to ``last``, both included."""
    return f"part-{first:012d}-{last:012d}.parquet"


def parts_in(folder: str) -> tuple[list[tuple[int, int, str]], list[str]]:
    """``(first, last, name)`` of every part in ``folder``, by first index, and the
    names of the temporary files there (what a killed sync left half written);
    both empty when ``folder`` is absent.  Other files are left alone.
    """
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return [], []
    parts = []
    for name in names:
        match = _PART.match(name)
        if match:
            parts.append((int(match[1]), int(match[2]), name))
    parts.sort()
    return parts, [name for name in names if _TEMPORARY.match(name)]


def remove_leftovers(folder: str, names: list[str]) -> None:
    """Remove the temporary files ``names`` (of :func:`parts_in`) from ``folder``."""
    for name in names:
        try:
            os.remove(os.path.join(folder, name))
        except FileNotFoundError:
            pass


def fsync_folder(folder: str) -> None:
    """Flush ``folder``'s entries (a rename or a removal in it) to disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(folder: str, name: str, data: bytes | memoryview, durable: bool = True) -> None:
    """Put ``data`` at ``folder/name`` whole or not at all (see the module's docstring).

    ``durable=False`` leaves out the fsync, for a file whose loss in a power
    cut costs only its rewriting.

    (Rejected: writing the Parquet file straight to its temporary name with
    pyarrow's writer; encoding to memory first keeps a file open for the
    shortest time and lets a caller compare the bytes with what is there.)
    """
    os.makedirs(folder, exist_ok=True)
    # One name per file, not per process: only the sync that holds the run's
    # lock writes in its folders, and a temporary file a killed one left is
    # overwritten by the next write of that file instead of lingering.
    temporary = os.path.join(folder, f".{name}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temporary, os.path.join(folder, name))
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
