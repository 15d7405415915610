"""How ml_dash names things in its messages, said one way everywhere.

The root stream, at each boundary:

- the Python API: ``None`` (``metrics()``, ``stats()["name"]``, ``names()``,
  ``list_experiments()[...]["streams"]``; ``align`` prefixes its columns
  ``root.``);
- the command line: shown as ``(root)``; ``.``, ``''``, ``root`` and
  ``(root)`` are accepted where a STREAM is asked for;
- exports and tables (CSV, JSONL, Parquet, ``runs_table``): ``""`` in the
  ``stream`` column;
- inside the store: ``""``.

:func:`stream_label` is how every message names a stream.

Globs, one dialect for every pattern the package takes (run prefixes in
``list_experiments``, names and paths in ``files.list/download/delete``):
``*`` and ``?`` stay within one ``/``-separated segment, ``**`` spans any
number of them, ``[abc]``/``[!abc]`` are classes; case-sensitive.
"""

import difflib
import functools
import re
from typing import NamedTuple

ROOT_CLI = "(root)"  # the root stream as the command line shows it
ROOT_EXPORT = ""  # the root stream in the stream column of exports and tables


class TrackName(NamedTuple):
    """The name of a track inside the store: its topic, kept apart from stream names.

    Streams and tracks share the store's catalog, the writer's and readers'
    tables of sub-databases and the limit on their number, all keyed by
    name; a track's key is this tuple, which never equals a stream's ``str``
    name, so a track ``"train"`` and a stream ``"train"`` are two things.
    (Rejected: a reserved prefix such as ``"track:"`` on the topic: stream
    names are arbitrary strings, so some stream name would collide with it.)
    """

    topic: str


def stream_label(name):
    """``stream 'train'``, ``track 'robot/pose'``, or ``the root stream`` for None or ``""``."""
    if type(name) is TrackName:
        return f"track {name.topic!r}"
    return f"stream {name!r}" if name else "the root stream"


def did_you_mean(word, choices, what="", quote=repr, cutoff=0.6, join=" or "):
    """``"did you mean 'a' or 'b'?"`` (``what`` before the names) for the close
    matches of ``word`` among ``choices``, or ``""`` when there are none."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=cutoff)
    if not close:
        return ""
    return f"did you mean {what}{join.join(map(quote, close))}?"


def absent_streams(missing, names, where):
    """Why the streams ``missing`` cannot be had from ``where``: each with its close
    matches among ``names`` (the streams that exist; None for the root)."""
    existing = sorted(name for name in names if name)
    parts = []
    for name in missing:
        hint = did_you_mean(name or "", existing, "stream ")
        parts.append(f"{stream_label(name)}{' (' + hint + ')' if hint else ''}")
    known = f"; the streams are {existing}" if existing else "; it has no named streams"
    return f"{', '.join(parts)}: not in {where}{known}"


@functools.lru_cache(maxsize=64)
def glob_matcher(pattern):
    """A ``match(text)`` function for the glob ``pattern`` (see the module docstring)."""
    if not isinstance(pattern, str):  # every listing, sync and query takes its pattern here
        raise TypeError(f"pattern must be a str, a glob over prefixes such as 'alice/**', "
                        f"got {type(pattern).__name__}")
    pattern = pattern.strip("/")
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and pattern.find("]", i + 2) != -1:
            end = pattern.find("]", i + 2)
            body = pattern[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z").match


def glob_match(text, pattern):
    """Whether ``text`` matches the glob ``pattern`` (see the module docstring)."""
    return glob_matcher(pattern)(text) is not None
