"""``ml-dash sync DEST [PATTERN]``: runs appended to a Parquet dataset (see :func:`ml_dash.sync`).

Prints one line of what was written; each run it could not sync is named on
standard error with the reason, and then the exit status is 1, so a cron
job or a job script's last line notices.
"""

from __future__ import annotations

import json
import sys


def add_commands(command):
    """Add the command with ``command(name, handler, help, description)`` of the parser."""
    sync = command("sync", _sync, "append runs to a hive-partitioned Parquet dataset",
                   "Append the points each run has past what DEST holds, as Parquet part files "
                   "(DEST/metrics/project=P/run=R/stream=S/part-FIRST-LAST.parquet) and each "
                   "run's status, times, tags and params (DEST/runs/project=P/run=R/run.parquet). "
                   "Safe to kill and run again, and while runs are training. Needs the 'arrow' "
                   "extra.")
    sync.add_argument("dest", metavar="DEST", help="the dataset's folder (e.g. on a shared mount)")
    sync.add_argument("pattern", nargs="?", metavar="PATTERN",
                      help="glob over prefixes, as for ls (default: every run)")
    sync.add_argument("--compact", action="store_true",
                      help="also merge each stream's small parts into larger ones")
    sync.add_argument("--json", action="store_true", help="print the summary as JSON")


def _sync(args):
    from .analysis.sync import sync
    summary = sync(args.dest, args.pattern, dash_root=args.dash_root, compact=args.compact)
    if args.json:
        print(json.dumps(vars(summary)))
    else:
        print(f"{summary.runs} runs synced to {args.dest}: {summary.points} points, "
              f"{summary.files} files; {summary.skipped} up to date"
              + (f", {len(summary.failed)} failed" if summary.failed else ""))
    for prefix, why in summary.failed.items():
        print(f"ml-dash sync: {prefix}: {why}", file=sys.stderr)
    return 1 if summary.failed else 0
