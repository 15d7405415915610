"""How ml_dash names things in its messages, said one way everywhere.

The root stream is ``None`` in the Python API (``metrics()``, ``stats()
["name"]``, ``names()``), ``""`` inside the store, and ``(root)`` on the
command line and in exports' stream column; :func:`stream_label` is how a
message names any stream.  A glob (``list_experiments(pattern=...)``,
``files.list(pattern)``) is ``fnmatch`` case-sensitive, where ``*`` also
matches ``/``: one dialect for every pattern the package takes.
"""

import difflib
import fnmatch

ROOT_CLI = "(root)"  # the root stream on the command line and in exports


def stream_label(name):
    """``stream 'train'``, or ``the root stream`` for None or ``""``."""
    return f"stream {name!r}" if name else "the root stream"


def did_you_mean(word, choices, what="", quote=repr, cutoff=0.6, join=" or "):
    """``"did you mean 'a' or 'b'?"`` (``what`` before the names) for the close
    matches of ``word`` among ``choices``, or ``""`` when there are none."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=cutoff)
    if not close:
        return ""
    return f"did you mean {what}{join.join(map(quote, close))}?"


def glob_match(text, pattern):
    """Whether ``text`` matches the glob ``pattern`` (see the module docstring)."""
    return fnmatch.fnmatchcase(text, pattern)
