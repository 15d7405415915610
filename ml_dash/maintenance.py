"""Verifying, compacting, moving and removing stored experiments.

``ml_dash.check`` and ``ml_dash.compact``; :func:`move` and :func:`remove`
are what ``ml-dash mv`` and ``ml-dash rm`` call.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid

from .errors import ConfigurationError
from .paths import no_run_message, parse_prefix, refuse_nesting, resolve_root
from .storage import DATA_FILE, CheckReport, check_store, compact_store, fsync_directory, writers_held_off

__all__ = ["check", "compact", "CheckReport", "move", "remove"]

# A removed run is first renamed to a folder of this name directly under
# dash_root, then deleted.  A prefix has at least two segments, so a folder
# of one segment is never listed or opened as a run, even when a kill left
# it half deleted; the next remove() clears what is left.
REMOVING = ".ml-dash-removing."


def check(prefix: str, dash_root: str | None = None, repair: bool = False) -> CheckReport:
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
    dash_root = resolve_root(dash_root)
    segments, path = parse_prefix(prefix, dash_root)
    return check_store("/".join(segments), path, repair=repair)


def compact(prefix: str, dash_root: str | None = None) -> tuple[int, int]:
    """Rewrite the experiment's LMDB file without free pages, atomically.

    Returns ``(bytes before, bytes after)``.  Needs the run closed (no live
    writer: ``WriterLockedError`` otherwise) and no reader in any process
    (``ExperimentError`` naming their pids otherwise); a process that opens
    the run while it is compacted waits until the new file is in place.
    """
    dash_root = resolve_root(dash_root)
    segments, path = parse_prefix(prefix, dash_root)
    return compact_store("/".join(segments), path)


def remove(prefix: str, dash_root: str | None = None) -> str:
    """Delete the run ``prefix`` with everything in its folder; returns that folder.

    Refused while a writer is live (``WriterLockedError``: wait for the run
    to end).  The writer lock is held until the folder is gone from its
    prefix, so no writer can start meanwhile.  The folder is renamed out of
    the way first (atomic), then deleted: a kill at any moment leaves either
    the whole run or no run at that prefix.  Empty parent folders go too.
    Readers open in other processes keep what they had mapped.
    """
    dash_root = resolve_root(dash_root)
    segments, path = _existing_run(prefix, dash_root)
    root = os.path.realpath(dash_root)
    _clear_removed(root)
    doomed = os.path.join(root, REMOVING + uuid.uuid4().hex)
    with writers_held_off(path, "remove it"):
        _rename(path, doomed, f"cannot remove {prefix!r}")
        fsync_directory(os.path.dirname(path))
    shutil.rmtree(doomed, ignore_errors=True)
    _remove_empty_parents(os.path.dirname(path), root)
    return path


def move(prefix: str, new_prefix: str, dash_root: str | None = None) -> str:
    """Rename the run ``prefix`` to ``new_prefix``; returns its new folder.

    One ``rename`` of the run folder, so a kill leaves the run whole at one
    of the two prefixes.  Refused: a live writer (``WriterLockedError``),
    a ``new_prefix`` whose folder exists (``FileExistsError``: a move never
    replaces a run), or one that would lie inside a run's folder (its own
    included) or hold one (``ConfigurationError``).  Empty parent folders
    of the old prefix are removed.
    """
    dash_root = resolve_root(dash_root)
    segments, path = _existing_run(prefix, dash_root)
    new_segments, new_path = parse_prefix(new_prefix, dash_root)
    old, new = "/".join(segments), "/".join(new_segments)
    root = os.path.realpath(dash_root)
    _refuse_links(root, new_segments, new)
    if os.path.lexists(new_path):
        what = "the run" if os.path.exists(os.path.join(new_path, DATA_FILE)) else "the folder"
        raise FileExistsError(f"cannot move {old!r} to {new!r}: {what} {new_path} exists; "
                              "a move never replaces anything (remove it first)")
    refuse_nesting(new_segments, dash_root)
    with writers_held_off(path, "move it"):
        os.makedirs(os.path.dirname(new_path), exist_ok=True)
        # Claims the name: rename() would silently replace an empty folder
        # made there meanwhile, and there is no portable "rename unless it
        # exists".  The rename then replaces this empty folder, atomically.
        os.mkdir(new_path)
        try:
            _rename(path, new_path, f"cannot move {old!r} to {new!r}")
        except BaseException:
            os.rmdir(new_path)
            _remove_empty_parents(os.path.dirname(new_path), root)
            raise
        fsync_directory(os.path.dirname(new_path))
        fsync_directory(os.path.dirname(path))
    _remove_empty_parents(os.path.dirname(path), root)
    return new_path


def _existing_run(prefix, dash_root):
    """``(segments, folder)`` of the run ``prefix``, reached without following a link."""
    segments, path = parse_prefix(prefix, dash_root)
    name = "/".join(segments)
    _refuse_links(os.path.realpath(dash_root), segments, name)
    if not os.path.isfile(os.path.join(path, DATA_FILE)):
        raise FileNotFoundError(no_run_message(name, dash_root))
    return segments, path


def _refuse_links(root, segments, prefix):
    """``ConfigurationError`` if a folder of ``prefix`` below ``root`` is a symbolic link.

    A link would make a move or removal act on what it points at: another
    run, or a folder outside dash_root.
    """
    for depth in range(1, len(segments) + 1):
        folder = os.path.join(root, *segments[:depth])
        if os.path.islink(folder):
            raise ConfigurationError(f"{prefix!r}: {folder} is a symbolic link; moving and "
                                     "removing runs never follow links")


def _rename(source, target, failure):
    try:
        os.rename(source, target)
    except OSError as exc:
        hint = (" (the run folder is on another filesystem than dash_root: it cannot be renamed "
                "in one step)") if exc.errno == errno.EXDEV else ""
        raise OSError(exc.errno, f"{failure}: {exc.strerror}{hint}", source) from None


def _clear_removed(root):
    """Delete what removals killed before their end left behind."""
    try:
        entries = [e for e in os.scandir(root) if e.name.startswith(REMOVING)]
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)


def _remove_empty_parents(folder, root):
    """Remove ``folder`` and its parents up to (not including) ``root`` while empty."""
    while folder != root and os.path.dirname(folder) != folder and folder.startswith(root + os.sep):
        try:
            os.rmdir(folder)
        except OSError:  # not empty (or gone): it and its parents stay
            return
        folder = os.path.dirname(folder)
