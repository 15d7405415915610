"""Experiment prefixes and where they live under ``dash_root``."""

import os


def parse_prefix(prefix, dash_root):
    """``(segments, directory)`` of ``prefix``; ``ValueError`` naming it if invalid.

    A prefix is ``owner/project[/folders...]/name`` with at least two
    segments.  Leading and trailing slashes are ignored.  Empty, ``.`` and
    ``..`` segments, backslashes and NUL are refused, so a prefix can never
    point outside ``dash_root``.
    """
    if not isinstance(prefix, str):
        raise ValueError(f"experiment prefix must be a string like 'owner/project/name', got {prefix!r}")
    segments = prefix.strip("/").split("/")
    problem = None
    if len(segments) < 2 or not all(segments):
        problem = "it needs at least 'owner/project' and no empty segments"
    elif any(s in (".", "..") for s in segments):
        problem = "'.' and '..' segments are not allowed"
    elif "\\" in prefix or "\0" in prefix:
        problem = "backslashes and NUL characters are not allowed"
    elif not _file_names(segments):
        problem = "it has characters that cannot be in a file name here, or a segment over 255 bytes"
    if problem:
        raise ValueError(f"invalid experiment prefix {prefix!r}: {problem}")
    root = os.path.realpath(dash_root)
    directory = os.path.join(root, *segments)
    if os.path.commonpath([root, os.path.realpath(directory)]) != root:
        raise ValueError(f"invalid experiment prefix {prefix!r}: it resolves outside {dash_root!r}")
    return segments, directory


def _file_names(segments):
    """True if every segment can be a directory name on this system."""
    try:
        return all(len(os.fsencode(segment)) <= 255 for segment in segments)
    except UnicodeEncodeError:  # a lone surrogate that surrogateescape cannot map
        return False
