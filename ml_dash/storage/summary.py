"""A run's summary for listings: in ``summary.json`` beside ``data.mdb``, or read from LMDB.

Listing a run from its store opens an LMDB environment (about 250 us,
most of it ``mmap`` and the lock file), and 100,000 runs then take half a
minute.  So a writer that closes a run which has ended saves what a
listing shows (record, counts, params, last values) in ``summary.json``,
written under a temporary name and renamed into place, without fsync: it
is derived, and a lost or torn one only costs the slow way.

The file names the LMDB snapshot it was taken from (the transaction id of
its read) and the identity of ``data.mdb``.  A listing trusts it only when
the newest commit in ``data.mdb`` is still that snapshot, read from the
file's meta pages without opening LMDB: any commit since (a relaunch, a
tag, a repair) or a compacted file makes it stale, and the run is read from
LMDB.  So a summary is never wrong, only sometimes unused.  A run still
``RUNNING`` gets none (it changes at every flush).

(Rejected: the size and ``mtime_ns`` of ``data.mdb``: LMDB reuses free
pages, so the size often stays, and the kernel's clock for mtimes ticks
every few milliseconds: a commit right after the summary went unseen.)
"""

from __future__ import annotations

import json
import os

from .columns import ColumnMap, column_path
from .envfiles import newest_snapshot
from .layout import check_no_link
from .reader import MAX_TIME

SUMMARY_FILE = "summary.json"
_FORMAT = 1
# What a listing shows of the experiment record (the launches, metadata and an error's
# traceback stay in the store: they made the file, and its parsing, several times larger).
LISTED = ("prefix", "status", "createdAt", "startedAt", "endedAt", "description", "tags",
          "launchCount", "writer")
_FIRST_READ = 1 << 16  # most summaries are a few hundred bytes


def gather(reader) -> dict:
    """The summary of the store ``reader`` reads, in one read transaction."""
    snapshot, record, counts, tracks, params, last, layout = reader.summary()
    error = record.get("error")
    record = {key: record[key] for key in LISTED if key in record}
    if type(error) is dict:  # a FAILED run's exception, without its traceback
        record["error"] = {"type": error.get("type"), "message": str(error.get("message"))[:200]}
    return {"format": _FORMAT, "snapshot": snapshot, "record": record,
            "streams": [[name, count] for name, count in counts.items()],
            "columns": [[name, sid, columns] for name, (sid, columns) in layout.items()],
            "tracks": tracks, "params": params,
            "last": [[name, values] for name, values in last.items()]}


def save(directory: str, summary: dict) -> None:
    """Write ``summary`` (from :func:`gather`) for the run at ``directory``, atomically.

    Nothing is saved for a run still ``RUNNING``.  Failures are ignored:
    the summary is a shortcut, and a run's close must not fail for it.
    """
    if summary["record"].get("status") in (None, "RUNNING"):
        return
    identity = newest_snapshot(directory)
    if identity is None or identity[2] != summary["snapshot"]:
        return  # committed to since it was read: it would be stale at once
    path = os.path.join(directory, SUMMARY_FILE)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        text = json.dumps(dict(summary, data_file=identity[:2]), separators=(",", ":"))
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except (OSError, TypeError, ValueError):
        try:
            os.unlink(temporary)
        except OSError:
            pass


def fresh(directory: str) -> dict | None:
    """The saved summary of the run at ``directory`` if it is still true, else None.

    None also for a missing, damaged or unknown-format file, and for a run
    folder whose path is not valid UTF-8 (LMDB cannot open it, so the run is
    unreadable, whatever its summary says): the caller then reads the store.
    """
    try:
        directory.encode("utf-8")
    except UnicodeEncodeError:
        return None
    try:
        fd = os.open(os.path.join(directory, SUMMARY_FILE), os.O_RDONLY | os.O_NONBLOCK)
        try:
            text = os.read(fd, _FIRST_READ)
            if len(text) == _FIRST_READ:  # a large one (many params): the rest
                text += os.read(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        summary = json.loads(text)
    except (OSError, ValueError):
        return None
    if type(summary) is not dict or summary.get("format") != _FORMAT:
        return None
    identity = newest_snapshot(directory)
    if identity is None or [*identity[:2]] != summary.get("data_file") \
            or identity[2] != summary.get("snapshot"):
        return None
    if not _well_formed(summary):
        return None
    return summary


def _well_formed(summary):
    """The shapes a listing relies on: a file edited or damaged in place, while the store kept
    its snapshot, must cost only the slow way, never a listing that fails or shows a count of
    points the columns do not hold.  (Rejected: checking only the containers' types; a stream
    named by a list, a negative count or a tag that is a dict then failed later, in `ls`.)"""
    record, streams, tracks = summary.get("record"), summary.get("streams"), summary.get("tracks")
    last, params = summary.get("last"), summary.get("params")
    if not (type(record) is dict and type(params) is dict and type(tracks) is dict
            and type(streams) is list and type(last) is list):
        return False
    times = [record.get(field) for field in ("createdAt", "startedAt", "endedAt")]
    tags = record.get("tags", [])
    return (all(t is None or (type(t) in (int, float) and abs(t) < MAX_TIME) for t in times)
            and type(record.get("status")) is str
            and type(record.get("prefix", "")) is str
            and type(record.get("description")) in (str, type(None))
            and type(tags) is list and all(type(tag) is str for tag in tags)
            and _is_count(record.get("launchCount", 0))
            and type(record.get("writer", {})) is dict
            and all(type(topic) is str and _is_count(count) for topic, count in tracks.items())
            and all(type(s) is list and len(s) == 2 and type(s[0]) is str and _is_count(s[1])
                    for s in streams)
            and all(type(entry) is list and len(entry) == 2 and type(entry[0]) is str
                    and type(entry[1]) is dict for entry in last))


def _is_count(value):
    return type(value) is int and value >= 0


def mapped_columns(directory: str, summary: dict, wanted) -> list | None:
    """``[(stream name, {key: read-only array})]`` of a fresh ``summary``'s streams,
    mapped from the column files it names, ``_ts`` always and the keys ``wanted(key)``
    accepts; None when the summary does not name its columns.

    The counts are the summary's, which :func:`fresh` checked are still the
    store's: a column's slots below its committed count never change.
    """
    layout = summary.get("columns")
    if type(layout) is not list:
        return None
    counts = dict((name, count) for name, count in summary["streams"])
    out = []
    for entry in layout:
        if type(entry) is not list or len(entry) != 3 or not _is_count(entry[1]) \
                or type(entry[2]) is not dict or entry[0] not in counts:
            return None
        name, sid, columns = entry
        count = counts[name]
        arrays = {}
        for key, cid in columns.items():
            if key == "_ts" or wanted(key):
                if not _is_count(cid):
                    return None
                path = column_path(directory, sid, cid)
                check_no_link(directory, path)
                arrays[key] = ColumnMap(path).view(count)[:count]
        out.append((name, arrays))
    return out
