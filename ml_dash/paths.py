"""Experiment prefixes and where they live under ``dash_root``.

A prefix names one folder, and that folder holds one run: a prefix that
would put a run inside another run's folder (``team/proj/files`` beside the
run ``team/proj``), or around one, is refused.  Otherwise the outer run's
listing would hide the inner one, and the outer run's maintenance (which
cleans up what a killed save left in ``files/``) would treat the inner run's
files as its own.
"""

import os
import re

from .errors import ConfigurationError
from .names import did_you_mean
from .storage import DATA_FILE

ROOT_VARIABLE = "ML_DASH_ROOT"
DEFAULT_ROOT = ".dash"
_WILDCARDS = re.compile(r"[*?\[]")


def resolve_root(dash_root=None):
    """``dash_root`` if given, else ``$ML_DASH_ROOT`` if set, else ``.dash``.

    Every function and command that takes a ``dash_root`` resolves it
    here, so a notebook in a subfolder finds the runs of its project when
    the variable names them.  (Rejected: searching the parent folders for a
    ``.dash``, as git does for ``.git``: a run would land in whichever store
    happens to be above, which is worse than not finding one.)
    """
    if dash_root is not None:
        return dash_root
    return os.environ.get(ROOT_VARIABLE) or DEFAULT_ROOT


def no_run_message(prefix, dash_root):
    """Why ``prefix`` is not found: the absolute folder searched, and the close matches."""
    root = os.path.abspath(resolve_root(dash_root))
    if not os.path.isdir(root):
        hint = "; that folder does not exist (set dash_root, or ML_DASH_ROOT, to where the runs are)"
    else:
        known = sorted(prefix for prefix, _ in run_folders(os.path.realpath(root)))
        close = did_you_mean(str(prefix).strip("/"), known, quote=str, cutoff=0.5, join=", ")
        hint = f"; {close}" if close else (
            f"; runs there: {', '.join(known[:5])}{' ...' if len(known) > 5 else ''}" if known
            else "; it holds no runs")
    return f"no run {prefix!r} under {root!r}{hint}"


def check_prefix(prefix):
    """The segments of ``prefix``; ``ConfigurationError`` (a ``ValueError``)
    naming it if invalid.

    A prefix is ``owner/project[/folders...]/name`` with at least two
    segments.  Leading and trailing slashes are ignored.  Empty, ``.`` and
    ``..`` segments, backslashes and NUL are refused, so a prefix can never
    point outside ``dash_root``; so is text that is not valid Unicode (a lone
    surrogate, which ``sys.argv`` makes of bytes that are not UTF-8): LMDB
    takes only UTF-8 paths.
    """
    if not isinstance(prefix, str):
        raise ConfigurationError(
            f"experiment prefix must be a string like 'owner/project/name', got {prefix!r}")
    segments = prefix.strip("/").split("/")
    problem = None
    if len(segments) < 2 or not all(segments):
        problem = "it needs at least 'owner/project' and no empty segments"
    elif any(s in (".", "..") for s in segments):
        problem = "'.' and '..' segments are not allowed"
    elif "\\" in prefix or "\0" in prefix:
        problem = "backslashes and NUL characters are not allowed"
    elif not _is_text(prefix):
        problem = ("it holds a lone surrogate, which is not text (Python makes these of file "
                   "names or arguments that are not valid UTF-8)")
    elif not all(len(segment.encode("utf-8")) <= 255 for segment in segments):
        problem = "a segment is longer than 255 bytes, the limit of a file name"
    if problem:
        raise ConfigurationError(f"invalid experiment prefix {prefix!r}: {problem}")
    return segments


def parse_prefix(prefix, dash_root):
    """``(segments, directory)`` of ``prefix`` under ``dash_root``; the
    prefix is checked by :func:`check_prefix`, and must not resolve (through
    symbolic links) outside ``dash_root``.
    """
    segments = check_prefix(prefix)
    root = os.path.realpath(resolve_root(dash_root))
    if not _is_text(root):
        raise ConfigurationError(
            f"dash_root {dash_root!r} resolves to a path that is not valid UTF-8 ({root!r}); "
            "LMDB cannot open stores there")
    directory = os.path.join(root, *segments)
    if os.path.commonpath([root, os.path.realpath(directory)]) != root:
        raise ConfigurationError(
            f"invalid experiment prefix {prefix!r}: it resolves outside {dash_root!r}")
    return segments, directory


def refuse_nesting(segments, dash_root):
    """``ConfigurationError`` if the run of prefix ``segments`` (as
    :func:`parse_prefix` gives them) would lie inside another run's folder
    or would contain another run.

    Looks at the folders above the run (one ``stat`` each) and, when the run
    folder exists, every folder below it (a run folder holds one folder per
    stream under ``columns/``).  Symbolic links below it are not followed.
    """
    prefix = "/".join(segments)
    root = os.path.realpath(resolve_root(dash_root))
    directory = os.path.join(root, *segments)
    for depth in range(len(segments)):
        above = os.path.join(root, *segments[:depth])
        if os.path.isfile(os.path.join(above, DATA_FILE)):
            outer = "/".join(segments[:depth])
            where = f"the run {outer!r}" if outer else f"dash_root {dash_root!r}, which is a run folder"
            raise ConfigurationError(
                f"invalid experiment prefix {prefix!r}: it would be stored inside {where}; "
                "a run's folder holds one run, so name it beside that run (another last "
                "segment), not under it")
    inner = _run_below(directory)
    if inner is not None:
        inner_prefix = "/".join(segments + os.path.relpath(inner, directory).split(os.sep))
        raise ConfigurationError(
            f"invalid experiment prefix {prefix!r}: its folder already holds the run "
            f"{inner_prefix!r}; a run's folder holds one run, so name it beside that run, "
            "not above it")


def _run_below(directory):
    """The first folder strictly below ``directory`` that holds a store, or None."""
    stack = [directory]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:  # missing, not a folder, or unreadable: holds no run we could open
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if os.path.isfile(os.path.join(entry.path, DATA_FILE)):
                    if _compaction_copy(entry):
                        continue
                    return entry.path
                stack.append(entry.path)
    return None


def _compaction_copy(entry):
    """A copy that a killed ``compact()`` left (``.compacting/data.mdb`` alone): no run."""
    try:
        return entry.name == ".compacting" and os.listdir(entry.path) == [DATA_FILE]
    except OSError:
        return False


def _is_text(text):
    """True if ``text`` is valid Unicode (encodes as UTF-8: no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def run_folders(root: str, pattern: str | None = None):
    """``(prefix, directory)`` of every store under ``root`` that ``pattern`` can match.

    Starts at the pattern's literal leading folders and, for a pattern
    without ``**``, goes no deeper than its number of segments.
    """
    base, depth = [], None
    if pattern:
        segments = pattern.strip("/").split("/")
        for segment in segments:
            if _WILDCARDS.search(segment) or segment in ("", ".", ".."):
                break
            base.append(segment)
        if "**" not in pattern:
            depth = len(segments)
    start = os.path.join(root, *base)
    stack = [(start, base)]
    while stack:
        directory, segments = stack.pop()
        if os.path.exists(os.path.join(directory, DATA_FILE)):
            if len(segments) >= 2:
                yield "/".join(segments), directory
            continue  # a run's own folders (columns/, files/) hold no runs
        if depth is not None and len(segments) >= depth:
            continue
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, segments + [entry.name]))
