"""``ml-dash import tensorboard LOGDIR``: other trackers' files into runs.

One subcommand per source under ``import``; each calls the importer of
``ml_dash.integrations`` and prints what it did.  The exit status is 1 when
something could not be imported (named on stderr), 0 otherwise: a file still
being written, imported up to its last whole record, is a note, not a failure.
"""

from __future__ import annotations

import argparse
import sys


def add_commands(command):
    """Add ``import`` with ``command(name, handler, help, description)`` of the parser."""
    parser = command("import", None, "import runs from other trackers' files (TensorBoard)",
                     "Import runs from the files another tracker wrote. Importing again adds only "
                     "what is new.")
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    tensorboard = sources.add_parser(
        "tensorboard", help="scalars and hparams of TensorBoard event files",
        formatter_class=parser.formatter_class,
        description="Make one run of every folder under LOGDIR that holds event files: its "
                    "scalars into streams (train/loss: stream train, key loss; one point per "
                    "stream and step, with a step field and the wall time as _ts), its hparams "
                    "into params. Importing again adds only the events written since. Needs "
                    "the 'tensorboard' extra.")
    tensorboard.set_defaults(handler=_tensorboard)
    tensorboard.add_argument("logdir", metavar="LOGDIR", help="the folder TensorBoard was pointed at")
    tensorboard.add_argument("--prefix", metavar="P",
                             help="prefix of the runs: a run folder LOGDIR/a/b becomes P/a/b "
                                  "(default: your user name / the name of LOGDIR)")
    # SUPPRESS: given after the source, it is taken; not given, it leaves the
    # value of `ml-dash import --dash-root R tensorboard ...` alone.
    tensorboard.add_argument("--dash-root", default=argparse.SUPPRESS, metavar="DIR",
                             help="where runs are stored (default $ML_DASH_ROOT, else .dash)")


def _tensorboard(args):
    from .integrations.tensorboard import import_tensorboard
    summary = import_tensorboard(args.logdir, prefix=args.prefix, dash_root=args.dash_root)
    if not summary.runs and not summary.problems:
        raise ValueError(f"no TensorBoard event files (*tfevents*) under {args.logdir!r}")
    for prefix, scalars in summary.runs.items():
        print(f"{prefix}: {scalars:,} scalars" if scalars else f"{prefix}: up to date")
    skipped = ", ".join(f"{count:,} {kind}" for kind, count in sorted(summary.skipped.items()))
    runs = f"{len(summary.runs)} run{'' if len(summary.runs) == 1 else 's'}"
    print(f"{summary.scalars:,} scalars and {summary.hparams} hparams imported into {runs}"
          + (f"; not imported: {skipped}" if skipped else ""))
    for note in summary.incomplete:
        print(f"note: {note}", file=sys.stderr)
    for problem in summary.problems:
        print(f"ml-dash import tensorboard: error: {problem}", file=sys.stderr)
    return 1 if summary.problems else 0
