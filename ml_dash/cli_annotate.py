"""``ml-dash tag`` and ``ml-dash describe``: a run's tags, description and notes.

Both go through :func:`ml_dash.annotations.annotate`, which changes those
fields only (status, times and launches stay) and is refused while a
process writes the run.  Errors are raised as the exceptions ``cli.main``
prints: ``ValueError`` for words it cannot read, ``FileNotFoundError`` (the
run is not there, with the close matches) and ``WriterLockedError``.
"""

from __future__ import annotations

import argparse


def add_commands(command):
    """Add the two commands with ``command(name, handler, help, description)`` of the parser."""
    tag = command("tag", _tag, "add or remove tags of a run, without reopening it",
                  "Add (+TAG) or remove (-TAG) tags of a run. Status, times and launches stay as "
                  "they are. Refused while a process writes the run.")
    tag.add_argument("prefix", metavar="PREFIX", help="the run")
    tag.add_argument("changes", nargs=argparse.REMAINDER, metavar="+TAG|-TAG",
                     help="tags to add (+best) or remove (-draft)")

    describe = command("describe", _describe, "set the description or notes of a run",
                       "Replace the description (or, with --notes, the notes) of a run; an empty "
                       "TEXT clears it. Status, times and launches stay as they are. Refused while "
                       "a process writes the run.")
    describe.add_argument("prefix", metavar="PREFIX", help="the run")
    describe.add_argument("text", metavar="TEXT", help="the new text")
    describe.add_argument("--notes", action="store_true", help="set the notes, not the description")


def _tag(args):
    from .annotations import annotate
    changes = _options_among(args, args.changes)
    bad = [word for word in changes if len(word) < 2 or word[0] not in "+-"]
    if bad or not changes:
        raise ValueError(f"tag {bad[0]!r}: write +TAG to add a tag, -TAG to remove one" if bad
                         else "no tags given: write +TAG to add a tag, -TAG to remove one")
    done = _annotate(annotate, args.prefix, add_tags=[word[1:] for word in changes if word[0] == "+"],
                     remove_tags=[word[1:] for word in changes if word[0] == "-"],
                     dash_root=args.dash_root)
    print(f"{args.prefix.strip('/')}: tags {', '.join(done['tags']) or '(none)'}")
    return 0


def _describe(args):
    from .annotations import annotate
    key = "notes" if args.notes else "description"
    _annotate(annotate, args.prefix, dash_root=args.dash_root, **{key: args.text})
    print(f"{args.prefix.strip('/')}: {key} {'set' if args.text else 'cleared'}")
    return 0


def _annotate(annotate, prefix, **changes):
    """``annotate()``, its ``TypeError`` for text it cannot store (a word that is not
    valid UTF-8) raised as the ``ValueError`` that ``cli.main`` prints on one line."""
    try:
        return annotate(prefix, **changes)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _options_among(args, words):
    """``words`` without the ``--dash-root DIR`` that may be among them: the tags take
    every word after PREFIX (argparse would read -TAG as an option of its own)."""
    from .paths import resolve_root
    out = []
    words = iter(words)
    for word in words:
        if word == "--dash-root" or word.startswith("--dash-root="):
            folder = next(words, None) if word == "--dash-root" else word.partition("=")[2]
            if not folder:
                raise ValueError("--dash-root needs a folder")
            args.dash_root = folder
        else:
            out.append(word)
    args.dash_root = resolve_root(args.dash_root)
    return out
