"""How ``exp.files`` reads the paths and patterns users give, and checks the ones
a store gives back.

A stored file is named by its path, ``folder/name``, the LMDB key of its
record.  Users may write paths ``/``-rooted or not (``"/models"`` and
``"models"`` are one folder); records show their folder ``/``-rooted
(``"/models"``, ``"/"`` for the root), as the reference package does.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import StorageError
from .storage import blobs, records

GLOB_CHARACTERS = frozenset("*?[")


def clean_path(path: Any, what: str = "file path") -> str:
    """``path`` as ``a/b/c`` (no leading, trailing or repeated slashes), or ``ValueError``
    (``TypeError`` for what is not text) naming ``what``."""
    if path is None:
        return ""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{what} must be a str, got {type(path).__name__}") from None
    if not isinstance(path, str) or "\\" in path or "\0" in path:
        raise ValueError(f"{what} {path!r}: use '/'-separated text without backslashes or NUL")
    parts = [part for part in path.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise ValueError(f"{what} {path!r}: '.' and '..' segments are not allowed")
    path = "/".join(parts)
    records.text_key(path, what)  # valid UTF-8 and short enough to be stored: else ValueError
    return path


def join(*parts: str) -> str:
    return "/".join(part for part in parts if part)


def split(path: str) -> tuple[str, str]:
    """``(folder, name)`` of a stored path."""
    folder, _, name = path.rpartition("/")
    return folder, name


def has_glob(text: str) -> bool:
    return any(char in GLOB_CHARACTERS for char in text)


def split_glob(pattern: str) -> tuple[str, str]:
    """``(folder, rest)``: the leading segments of ``pattern`` that hold no glob
    character (never its last one), and the pattern that follows them, so that
    ``"images/*.png"`` is ``*.png`` in the folder ``images``."""
    parts = clean_path(pattern, "pattern").split("/")
    literal = 0
    while literal < len(parts) - 1 and not has_glob(parts[literal]):
        literal += 1
    return "/".join(parts[:literal]), "/".join(parts[literal:])


def shown(record: Any) -> Any:
    """``record`` as the API returns it (see :func:`shown_all`)."""
    return shown_all([record])[0]


def shown_all(found: list) -> list:
    """Records as the API returns them: each folder ``/``-rooted, ``bindrs`` a list
    (records of earlier versions have neither).  Changed in place, in one loop:
    every record comes freshly decoded from the store or freshly built, and a
    copy per record cost more than decoding it (a key added to each, about as
    much: new records store ``bindrs`` even when empty for that reason)."""
    for record in found:
        if isinstance(record, dict):  # else a crafted store: listed as it is, refused where used
            folder = record.get("path")
            if isinstance(folder, str) and not folder.startswith("/"):  # an earlier version's
                record["path"] = "/" + folder.strip("/")
            if "bindrs" not in record:
                record["bindrs"] = []
    return found


def labels(record: Any, field: str) -> list:
    """The record's ``tags`` or ``bindrs`` that are text (a crafted record may hold anything)."""
    found = record.get(field) if isinstance(record, dict) else None
    return [label for label in found if isinstance(label, str)] if isinstance(found, list) else []


def filename(record: Any) -> str | None:
    """The record's filename, or None if it has none that is text."""
    name = record.get("filename") if isinstance(record, dict) else None
    return name if isinstance(name, str) else None


def usable(key: str, record: Any, use: str) -> dict:
    """``record`` (stored at path ``key``) once its names are safe to use on disk,
    else ``StorageError`` naming it and what it was needed for (``use``).

    A run may come from anyone: a stored path with ``..`` or a filename with
    a ``/`` would make a download write outside its target folder, a content
    id that is a path a read use a file outside the run.  Listing does not
    check: there the names are only shown.
    """
    problem = None
    if not isinstance(record, dict):
        problem = f"its record is a {type(record).__name__}, not a file record"
    elif not _is_clean(key):
        problem = "its stored path is not a plain 'folder/name' path"
    elif not (_is_clean(filename(record)) and "/" not in record["filename"]):
        problem = f"its filename {record.get('filename')!r} is not a plain file name"
    elif not blobs.is_id(record.get("id")):
        problem = f"its content id {record.get('id')!r} is not one ml_dash makes (32 hex digits)"
    elif not isinstance(record.get("checksum"), str):
        problem = "its record has no sha256 checksum"
    if problem:
        raise StorageError(f"stored file {key!r} cannot be {use}: {problem}; the run was "
                           "altered or not written by ml_dash")
    return record


def _is_clean(path: Any) -> bool:
    """True if ``path`` is UTF-8 text that :func:`clean_path` leaves as it is."""
    if not isinstance(path, str) or not path:
        return False
    try:
        path.encode("utf-8")
        return clean_path(path) == path
    except ValueError:  # a refused path, or a lone surrogate (UnicodeEncodeError)
        return False
