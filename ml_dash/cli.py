"""Command line: ``ml-dash`` (also ``python -m ml_dash``).

Every subcommand is a thin call to the public API; what it prints is
formatted by :mod:`ml_dash.cli_output`.  Errors a user can cause (an unknown
run, stream or key, a missing extra) print one line naming the problem and
the close matches, and exit with status 1.
"""

import argparse
import json
import os
import re
import sys
import time

from . import cli_annotate, cli_import, cli_sql, cli_sync
from . import cli_output as output
from .names import ROOT_CLI, did_you_mean, stream_label
from .timestamps import iso
from .values import strict_json

# How the root stream may be named where a STREAM is asked for; it is shown as (root).
ROOT_NAMES = ("", ".", "root", ROOT_CLI)
# A PREFIX holding one of these is a glob over prefixes (check, compact).
_WILDCARDS = re.compile(r"[*?[]")


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 1."""


# -- helpers -----------------------------------------------------------------------



def _count(text):
    """An argparse type: a whole number >= 0 (``--tail -5`` printed nothing, silently)."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {number}")
    return number

def _load(args, prefix=None):
    import ml_dash
    prefix = prefix or args.prefix
    try:
        return ml_dash.load(prefix, dash_root=args.dash_root)
    except FileNotFoundError:
        raise _no_run(args, prefix) from None


def _no_run(args, prefix):
    """The ``UserError`` for a run that is not there, naming the close matches."""
    from .paths import no_run_message
    return UserError(no_run_message(prefix, args.dash_root))


def _stream(view, name):
    """The stream called ``name`` (``''``, ``.`` or ``root`` for the root)."""
    names = view.metrics.names()
    if name in names:
        return view.metrics(name)
    if name in ROOT_NAMES and None in names:
        return view.metrics(None)
    shown = sorted(ROOT_CLI if n is None else n for n in names)
    close = did_you_mean(name, shown, quote=str, join=", ")
    hint = f"; {close}" if close else ""
    raise UserError(f"run {view.prefix!r} has no stream {name!r}{hint} (its streams: "
                    f"{', '.join(shown) or 'none'})")


def _key(stream, key):
    keys = stream.keys()
    if key not in keys:
        close = did_you_mean(key, keys, quote=str, join=", ")
        hint = f"; {close}" if close else ""
        raise UserError(f"{stream_label(stream.name)} has no column {key!r}{hint} "
                        f"(its columns: {', '.join(keys)})")
    return key


# -- commands ----------------------------------------------------------------------


def _ls(args):
    import ml_dash
    listing = ml_dash.list_experiments(args.dash_root, args.pattern, where=args.where)
    if args.json:
        print(json.dumps(listing, indent=1))
    elif listing:
        print(output.runs(listing, args.param))
    else:
        where = f"matching {args.pattern!r} " if args.pattern else ""
        print(f"no runs {where}under {args.dash_root}", file=sys.stderr)
    return 0


def _show(args):
    with _load(args) as view:
        info = view.info
        print(f"{view.prefix}  {info.get('status')}{' (stale)' if info.get('stale') else ''}")
        for key in ("description", "tags", "notes", "createdAt", "startedAt", "endedAt"):
            if info.get(key):
                print(f"  {key}: {output.cell(info[key])}")
        kept = len(info["launches"])
        if kept > 1:
            cut = f", the first and the latest {kept - 1} kept" if info["launchCount"] > kept else ""
            print(f"\nlaunches ({info['launchCount']}{cut})")
            print(output.launches(info["launches"][-args.launches:]))
        if info.get("context"):
            print("\ncontext\n" + output.context(info["context"]))
        error = info.get("error")
        if error:
            print(f"\nerror: {error['type']}: {error['message']}")
            print("  " + error["traceback"].rstrip("\n").replace("\n", "\n  "))
        params = getattr(view, "params", None)  # parameters, where this version stores them
        if params is not None:
            values = params.get()
            if values:
                print("\nparams")
                print(output.table(sorted(values.items()), ["KEY", "VALUE"]))
        rows = []
        for stats in view.metrics.list_all():
            stream = view.metrics(stats["name"])
            first = stream.read(0, 1)["data"][0]["data"]
            last = stream.read(stats["count"] - 1, 1)["data"][0]["data"]
            rows.append([stats["name"] or ROOT_CLI, stats["count"], _fields(first), _fields(last)])
        print("\nstreams")
        print(output.table(rows, ["STREAM", "POINTS", "FIRST", "LAST"]))
        topics = view.tracks.names()
        if topics:
            rows = []
            for topic in topics:
                stats = view.tracks(topic).stats()
                rows.append([topic, stats["count"], output.cell(iso(stats["firstTimestamp"])),
                             output.cell(iso(stats["lastTimestamp"])),
                             ", ".join(stats["columns"])])
            print("\ntracks")
            print(output.table(rows, ["TRACK", "ENTRIES", "FIRST _ts", "LAST _ts", "NUMERIC FIELDS"]))
        logs = getattr(view, "logs", None)  # logs, where this version stores them
        if logs is not None:
            recent = logs.read(start_index=0, limit=100_000)["data"][-args.logs:]
            if recent:
                print("\nrecent logs")
                for record in recent:
                    extra = "".join(f" {k}={output.cell(v)}" for k, v in (record.get("metadata") or {}).items())
                    print(f"  {record['timestamp']} [{record['level'].upper()}] {record['message']}{extra}")
    return 0


def _fields(point):
    """A point as ``k=v, ...`` of its own keys (``_ts`` only when it has no other).

    (Rejected: the last point's keys for both ends, which printed the first
    point as blanks when the keys changed, e.g. after a ``log_summary()``.)
    """
    keys = [k for k in point if k != "_ts"] or list(point)
    return ", ".join(f"{k}={output.cell(point[k])}" for k in keys)


def _track(view, topic):
    """The track of ``topic``, or a ``UserError`` naming the run's tracks."""
    topics = view.tracks.names()
    if topic not in topics:
        close = did_you_mean(topic, topics, quote=str, join=", ")
        hint = f"; {close}" if close else ""
        raise UserError(f"run {view.prefix!r} has no track {topic!r}{hint} (its tracks: "
                        f"{', '.join(topics) or 'none'})")
    return view.tracks(topic)


def _read(args):
    if (args.stream is None) == (args.track is None):
        raise UserError("name a STREAM or a --track TOPIC (one of them)")
    if args.track is not None and args.follow:
        raise UserError("--follow reads streams; a track is read as it is committed")
    with _wait_for_run(args) if args.follow else _load(args) as view:
        if args.track is not None:
            track = _track(view, args.track)
            count = len(track)
            start = max(count - args.tail, 0) if args.tail is not None else args.start
            _print_rows(track.read_page(start_index=start, limit=args.limit)["data"], args.json, None)
            return 0
        try:
            stream = _stream(view, args.stream)
        except UserError:
            if not (args.follow and view.status == "RUNNING" and not view.stale):
                # Not live now: a short run may have made the stream and ended
                # since the first look, so look again before refusing.
                stream = _stream(view, args.stream)
            else:
                # A live run may create the stream later: wait for its first points.
                stream = view.metrics(None if args.stream in ROOT_NAMES else args.stream)
                print(f"waiting for the first points of stream {args.stream!r} of the live run",
                      file=sys.stderr, flush=True)
        count = len(stream)
        start = max(count - args.tail, 0) if args.tail is not None else args.start
        page = stream.read(start_index=start, limit=args.limit)
        keys = _print_rows(page["data"], args.json, None)
        if not args.follow:
            return 0
        start += len(page["data"])
        try:
            ended = False
            while True:
                page = stream.read(start_index=start, limit=args.limit)
                if page["data"]:
                    keys = _print_rows(page["data"], args.json, keys)
                    start += len(page["data"])
                    continue
                if ended:
                    return 0  # the run had ended before this last read: nothing more will come
                # Checked after an empty read, then read once more: points
                # committed between the two are still printed.
                ended = view.status != "RUNNING" or view.stale
                if not ended:
                    time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0


def _wait_for_run(args):
    """The view of run ``args.prefix`` once it exists and has started: ``read -f``
    may be started before the training that creates the run."""
    import ml_dash

    from .paths import parse_prefix
    from .storage import DATA_FILE
    data_file = os.path.join(parse_prefix(args.prefix, args.dash_root)[1], DATA_FILE)
    waiting = False
    while True:
        try:
            # Looked for first: the message of load() lists every run, and this polls.
            if not os.path.exists(data_file):
                raise FileNotFoundError(data_file)
            return _started(ml_dash.load(args.prefix, dash_root=args.dash_root))
        except (FileNotFoundError, UserError):
            if not waiting:
                print(f"waiting for the run {args.prefix.strip('/')!r} to start", file=sys.stderr,
                      flush=True)
                waiting = True
            time.sleep(args.interval)


def _started(view):
    """``view`` if its run has a status; else closed and ``UserError`` (a run being created)."""
    if view.status is None:
        view.close()
        raise UserError(f"run {view.prefix!r} is being created")
    return view


def _print_rows(rows, as_json, keys):
    """Print rows and return the keys shown.  The header comes with the first
    page (``keys`` None), and again, with the new keys added after the
    others, when a page of a followed run brings keys it did not show.

    (Rejected: keeping the first page's columns, which printed keys that
    arrive later, a validation metric logged after the first epoch, as
    nothing at all.)
    """
    if as_json:
        for row in rows:
            print(strict_json(row))  # NaN and infinities as null: every JSON reader parses it
    elif rows:
        shown = keys or []
        added = [k for k in dict.fromkeys(k for row in rows for k in row["data"]) if k not in shown]
        text, _ = output.points(rows, shown + added)
        print(text if keys is None or added else text.split("\n", 1)[1])
        keys = shown + added
    sys.stdout.flush()
    return keys


def _export(args):
    import ml_dash
    fmt = args.format or (os.path.splitext(args.output)[1].lstrip(".") if args.output else "csv")
    path = args.output or f"{args.prefix.strip('/').replace('/', '_')}.{fmt}"
    _load(args).close()  # a clear error for an unknown run
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    written = ml_dash.export(args.prefix, path, fmt, dash_root=args.dash_root,
                             progress=output.Progress(f"export {path}") if show else None)
    print(f"wrote {written:,} points to {path}")
    return 0


def _plot(args):
    import ml_dash
    with _load(args) as view:
        stream = _stream(view, args.stream)
        _key(stream, args.key)
        name = stream.name
    drawn = ml_dash.plot(args.prefix, name, args.key, args.output, compare=args.compare,
                         dash_root=args.dash_root, points=args.points, method=args.method,
                         x=args.x, log_y=args.log_y, smooth=args.smooth, markers=args.markers,
                         title=args.title)
    print(f"wrote {args.output} ({len(drawn)} run{'s' if len(drawn) != 1 else ''})")
    return 0


def _maintenance(name):
    import ml_dash
    function = getattr(ml_dash, name, None)
    if function is None:
        raise UserError(f"'{name}' is not available in this version of ml_dash "
                        f"(ml_dash.{name} is missing)")
    return function


def _matching_runs(args):
    """The prefixes ``args.prefix`` names: itself, or the runs its glob matches."""
    import ml_dash

    from .paths import parse_prefix
    from .storage import DATA_FILE
    if not _WILDCARDS.search(args.prefix):
        _load(args).close()  # a clear error for an unknown run
        return [args.prefix]
    # A run whose own name holds *, ? or [ ('g/[x]/r') is that run, not a pattern
    # matching others ('g/x/r').
    try:
        exact = os.path.exists(os.path.join(parse_prefix(args.prefix, args.dash_root)[1], DATA_FILE))
    except ValueError:
        exact = False
    if exact:
        return [args.prefix]
    matched = [run["prefix"] for run in ml_dash.list_experiments(args.dash_root, args.prefix)]
    if not matched:
        raise UserError(f"no runs matching {args.prefix!r} under {args.dash_root!r}")
    return matched


def _check(args):
    check = _maintenance("check")
    status = 0
    for prefix in _matching_runs(args):
        report = check(prefix, dash_root=args.dash_root, repair=args.repair)
        print(repr(report))
        for problem in getattr(report, "problems", []):
            print(f"  problem: {problem}")
        for fixed in getattr(report, "repaired", []):
            print(f"  repaired: {fixed}")
        status |= 0 if report else 1
    return status


def _compact(args):
    from .errors import MLDashError
    compact = _maintenance("compact")
    prefixes = _matching_runs(args)
    status = 0
    for prefix in prefixes:
        try:
            before, after = compact(prefix, dash_root=args.dash_root)
        except MLDashError as exc:
            if len(prefixes) == 1:
                raise
            # One live run among many: the others are still compacted.
            print(f"ml-dash compact: error: {prefix}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"compacted {prefix}: {before:,} -> {after:,} bytes")
    return status


def _rm(args):
    from .maintenance import remove
    try:  # not opened first: a run too damaged to open must still be removable
        remove(args.prefix, dash_root=args.dash_root)
    except FileNotFoundError:
        raise _no_run(args, args.prefix) from None
    print(f"removed {args.prefix.strip('/')}")
    return 0


def _mv(args):
    from .maintenance import move
    try:
        move(args.prefix, args.new_prefix, dash_root=args.dash_root)
    except FileNotFoundError:
        raise _no_run(args, args.prefix) from None
    print(f"moved {args.prefix.strip('/')} to {args.new_prefix.strip('/')}")
    return 0


def _demo(args):
    from .demo import run_demo
    run_demo(steps=args.steps, dash_root=args.dash_root)
    return 0


def _serve(args):
    from .dashboard import serve

    serve(args.dash_root, host=args.host, port=args.port, token=args.token, open_browser=args.open)
    return 0


# -- the parser --------------------------------------------------------------------


def _version():
    from . import __version__
    return f"ml-dash {__version__} (ml_dash in {os.path.dirname(os.path.abspath(__file__))})"


def _formatter(prog):
    # A fixed width, so that --help (and docs/cli.md made from it) does not
    # depend on the terminal.
    return argparse.HelpFormatter(prog, width=90)


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dash-root", default=None, metavar="DIR",
                        help="where runs are stored (default $ML_DASH_ROOT, else .dash)")
    parser = argparse.ArgumentParser(
        prog="ml-dash", formatter_class=_formatter,
        description="Local experiment-metrics store: list, inspect, export and plot runs.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, handler, help, description=None):
        sub = commands.add_parser(name, parents=[common], help=help, formatter_class=_formatter,
                                  description=description or help)
        sub.set_defaults(handler=handler)
        return sub

    ls = command("ls", _ls, "list runs with status, times and stream counts",
                 "List runs with their status (stale: RUNNING but its writer is gone), start and "
                 "end times, points per stream and entries per track. Reads no history: fast on "
                 "any number of points.")
    ls.add_argument("pattern", nargs="?", metavar="PATTERN",
                    help="glob over prefixes: * within a segment, ** across them "
                         "(e.g. 'alice/proj/*', '**/lr-*')")
    ls.add_argument("--json", action="store_true", help="print the listing as JSON")
    ls.add_argument("--param", action="append", default=[], metavar="KEY",
                    help="add a column for this param (flat key, e.g. model.depth); repeatable")
    ls.add_argument("--where", metavar="EXPR",
                    help="only runs where EXPR holds, e.g. \"params.lr > 0.01 and status == "
                         "'COMPLETED'\" (fields, params.KEY, last.KEY, comparisons, and/or/not)")

    show = command("show", _show, "show a run: params, streams with first and last values, tracks, logs")
    show.add_argument("prefix", metavar="PREFIX", help="the run, e.g. alice/proj/exp")
    show.add_argument("--logs", type=int, default=10, metavar="N",
                      help="recent log lines to show (default 10)")
    show.add_argument("--launches", type=_count, default=10, metavar="N",
                      help="latest launches to show, when the run was started more than once "
                           "(default 10)")

    cli_annotate.add_commands(command)
    cli_import.add_commands(command)
    cli_sql.add_commands(command)
    cli_sync.add_commands(command)

    read = command("read", _read, "print points of a stream or entries of a track, or follow a live run",
                   "Print a page of points of a stream, or of entries of a track (--track). The root "
                   "stream is '.' (or '', 'root', '(root)').")
    read.add_argument("prefix", metavar="PREFIX", help="the run")
    read.add_argument("stream", metavar="STREAM", nargs="?",
                      help="stream name ('.' for the root stream)")
    read.add_argument("--track", metavar="TOPIC", help="read this track's entries instead of a stream")
    read.add_argument("--start", type=_count, default=0, metavar="N", help="first point index")
    read.add_argument("--limit", type=_count, default=20, metavar="N",
                      help="points per page (default 20)")
    read.add_argument("--tail", type=_count, metavar="N", help="start N points before the end")
    read.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new points until the run ends (Ctrl-C stops)")
    read.add_argument("--interval", type=float, default=0.5, metavar="SECONDS",
                      help="polling interval with --follow (default 0.5)")
    read.add_argument("--json", action="store_true", help="one JSON object per point")

    export = command("export", _export, "export a run to CSV, JSON lines or Parquet",
                     "Export every stream of a run into one file. CSV and Parquet: one row per "
                     "point with stream, index, createdAt, _ts and every numeric column; JSON "
                     "lines: every field as logged. Parquet needs the 'arrow' extra.")
    export.add_argument("prefix", metavar="PREFIX", help="the run")
    export.add_argument("-o", "--output", metavar="PATH",
                        help="output file (default: the prefix with / as _, plus the format)")
    export.add_argument("--format", choices=["csv", "jsonl", "parquet"],
                        help="default: from the output's suffix, else csv")
    export.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")

    plot = command("plot", _plot, "plot a key of a stream, downsampled, into an image",
                   "Plot KEY of STREAM into an image file (the 'plot' extra: matplotlib). With "
                   "--compare, the run PREFIX is drawn darker, on top, and first in the legend, "
                   "which sits beside the axes. Exit status 1 when the run has no finite value "
                   "of KEY to draw.")
    plot.add_argument("prefix", metavar="PREFIX", help="the run")
    plot.add_argument("stream", metavar="STREAM", help="stream name ('.' for the root stream)")
    plot.add_argument("key", metavar="KEY", help="column to plot, e.g. loss")
    plot.add_argument("-o", "--output", required=True, metavar="PATH",
                      help="image file, e.g. out.png")
    plot.add_argument("--compare", metavar="PATTERN",
                      help="also draw the runs matching this glob on the same axes")
    plot.add_argument("--points", type=int, default=2000, metavar="N",
                      help="points per curve after downsampling (default 2000)")
    plot.add_argument("--method", choices=["minmax", "lttb"], default="minmax",
                      help="downsampling method (default minmax)")
    plot.add_argument("--x", metavar="KEY",
                      help="column for the x axis (default: point index); _ts is drawn as local time")
    plot.add_argument("--log-y", action="store_true", help="logarithmic y axis (values <= 0 left out)")
    plot.add_argument("--smooth", type=float, default=0.0, metavar="W",
                      help="exponential moving average of weight 0 <= W < 1 over the faded raw "
                           "curve (default 0: none; 0.9 is heavy)")
    plot.add_argument("--markers", action=argparse.BooleanOptionalAction, default=None,
                      help="a marker on every point (default: only on curves of 50 points or fewer)")
    plot.add_argument("--title", metavar="TEXT", help="title (default: run, stream and key)")

    check = command("check", _check, "verify a run's stored points and columns",
                    "Verify counts, index continuity, every point and every column against its "
                    "rows. Exit status 1 when problems remain.")
    check.add_argument("prefix", metavar="PREFIX",
                       help="the run, or a glob over prefixes (e.g. 'alice/**')")
    check.add_argument("--repair", action="store_true", help="rebuild wrong columns from the rows")

    compact = command("compact", _compact, "rewrite a closed run's file without free pages",
                      "Rewrite the file of a run that has ended without its free pages. A run "
                      "still being written is refused: wait for it to end. With a glob, every "
                      "matching run is compacted and the exit status is 1 if one was refused.")
    compact.add_argument("prefix", metavar="PREFIX",
                         help="the run, or a glob over prefixes (e.g. 'alice/**')")

    rm = command("rm", _rm, "delete a run that has ended",
                 "Delete a run and everything in its folder. A run still being written is "
                 "refused. A kill leaves either the whole run or none.")
    rm.add_argument("prefix", metavar="PREFIX", help="the run")

    mv = command("mv", _mv, "rename a run that has ended",
                 "Give a run another prefix (one rename of its folder: a kill leaves it whole "
                 "under one of the two). Refused: a run still being written, a NEW_PREFIX that "
                 "exists, and one inside another run's folder.")
    mv.add_argument("prefix", metavar="PREFIX", help="the run")
    mv.add_argument("new_prefix", metavar="NEW_PREFIX", help="its new prefix")

    serve = command("serve", _serve, "open a local web dashboard of the runs",
                    "Serve a web dashboard of every run under the dash root: runs table, live charts "
                    "drawn from min/max buckets, compare, logs, params, files. Read-only: it never "
                    "writes into a store (only a .dashrc you save). Needs the 'ui' extra. Binding an "
                    "address other than loopback requires a token, which the printed URL carries.")
    serve.add_argument("--host", default="127.0.0.1", metavar="H", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, metavar="N", help="port (default 8765)")
    serve.add_argument("--token", metavar="T",
                       help="require this token on every request (default: none on loopback, a random "
                            "one on any other address)")
    serve.add_argument("--open", action="store_true", help="open the page in a web browser")

    demo = command("demo", _demo, "log a synthetic training run and read it back")
    demo.add_argument("--steps", type=int, default=100_000, help="training steps (default 100,000)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import MLDashError
    from .paths import resolve_root
    if hasattr(args, "dash_root"):
        args.dash_root = resolve_root(args.dash_root)
    try:
        return args.handler(args)
    except BrokenPipeError:  # `ml-dash read ... | head`
        sys.stderr.close()
        return 0
    # OSError: an output path that cannot be written (export -o /missing/dir/run.csv)
    except (UserError, MLDashError, ImportError, ValueError, KeyError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"ml-dash {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
