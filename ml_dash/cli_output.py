"""Text the command line prints: tables, values, a progress line, its reference.

Kept apart from ``cli.py`` so that the commands stay thin calls to the
public API and all formatting choices live in one place.
"""

import datetime
import json
import math
import shlex
import sys
import time

from .names import ROOT_CLI


def table(rows, headers):
    """Rows of strings as aligned columns under ``headers`` (numbers right-aligned)."""
    rows = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(headers))]

    def line(values):
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric)).rstrip()
    return "\n".join([line(headers), *(line(r) for r in rows)])


def _is_number(text):
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return text == ""


def cell(value):
    """One value as table text: floats to 6 significant digits (large ones to
    milliseconds), None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        # Times such as _ts (1.8e9 seconds) keep their milliseconds.
        return f"{value:.3f}" if abs(value) >= 1e6 else f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def runs(listing, params=()):
    """The ``ls`` table, with a column for each of ``params`` (flat keys)."""
    rows = []
    for run in listing:
        status = run["status"] or ""
        if run.get("stale"):
            status += " (stale)"
        if status == "FAILED" and run.get("error"):
            status += f" ({run['error'].split(':', 1)[0]})"  # the exception's type
        if run.get("launches", 0) > 1:
            status += f" x{run['launches']}"
        streams = ", ".join(f"{s['name'] or ROOT_CLI}:{s['count']:,}" for s in run["streams"])
        tracks = ", ".join(f"{t['topic']}:{t['count']:,}" for t in run.get("tracks", ()))
        rows.append([run["prefix"], status, *(run.get("params", {}).get(key) for key in params),
                     local_time(run.get("startedAt")), local_time(run.get("endedAt")), run["points"],
                     streams, tracks])
    return table(rows, ["PREFIX", "STATUS", *params, "STARTED", "ENDED", "POINTS", "STREAMS",
                        "TRACKS"])


def context(recorded):
    """The context section of ``show``: where the run's latest launch came from."""
    lines = []
    git = recorded.get("git")
    if git:
        where = ", ".join(part for part in (git.get("branch") or "detached",
                                            "dirty" if git.get("dirty") else "") if part)
        lines.append(f"git: {git.get('commit') or '(no commit yet)'} ({where})")
    if recorded.get("command"):
        lines.append(f"command: {shlex.join(str(arg) for arg in recorded['command'])}")
    if recorded.get("cwd"):
        lines.append(f"cwd: {recorded['cwd']}")
    if recorded.get("python"):
        lines.append(f"python: {recorded['python']} ({recorded.get('executable') or '?'})")
    versions = {"ml_dash": recorded.get("ml_dash"), **(recorded.get("packages") or {})}
    shown = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
    if shown:
        lines.append(f"packages: {shown}")
    if recorded.get("hostname"):
        lines.append(f"host: {recorded['hostname']}, pid {recorded.get('pid')}")
    return "\n".join("  " + line for line in lines)


def launches(entries):
    """The launches table of ``show``."""
    rows = [[local_time(e.get("startedAt")), local_time(e.get("endedAt")),
             e.get("status") or "", str(e.get("pid") or ""), e.get("host") or "",
             e.get("commit") or "", e.get("command") or "", e.get("error") or ""] for e in entries]
    return table(rows, ["STARTED", "ENDED", "STATUS", "PID", "HOST", "COMMIT", "COMMAND", "ERROR"])


def local_time(text):
    """An ISO UTC time (``...Z``) as this machine's local time to the second, with its
    UTC offset: ``2026-12-02 04:14:17+01:00``; None as empty.

    (Rejected: the UTC text cut to 19 characters, which printed UTC times with
    no zone, read as local times by anyone east or west of Greenwich.)
    """
    if not text:
        return ""
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone().isoformat(sep=" ", timespec="seconds")


def points(page_rows, keys=None):
    """A page of ``read()`` rows as a table: index, createdAt and the fields."""
    if keys is None:
        keys = []
        for row in page_rows:
            keys.extend(k for k in row["data"] if k not in keys)
    rows = [[row["index"], row["createdAt"], *(row["data"].get(k) for k in keys)]
            for row in page_rows]
    return table(rows, ["INDEX", "CREATED", *keys]), keys


class Progress:
    """A one-line progress bar on a stream (stderr), redrawn at most 10 times a second."""

    def __init__(self, label, out=None):
        self.label = label
        self.out = out or sys.stderr
        self.started = time.monotonic()
        self.shown = 0.0

    def __call__(self, done, total):
        now = time.monotonic()
        if now - self.shown < 0.1 and done < total:
            return
        self.shown = now
        fraction = done / total if total else 1.0
        bar = "#" * int(fraction * 30)
        rate = done / max(now - self.started, 1e-9)
        self.out.write(f"\r{self.label} [{bar:<30}] {fraction:6.1%} {done:,}/{total:,} points "
                       f"{rate:,.0f}/s")
        if done >= total:
            self.out.write("\n")
        self.out.flush()


def reference(parser):
    """Markdown of ``--help`` of the command and every subcommand (docs/cli.md)."""
    parts = ["# Command line reference", "",
             "Generated from `--help` by `python docs/make_cli_md.py`; a test checks it is current.",
             "", "```text", parser.format_help().rstrip(), "```"]
    for name, sub in _subcommands(parser):
        parts += ["", f"## ml-dash {name}", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


def _subcommands(parser):
    """``(name, parser)`` of every subcommand, nested ones (``import tensorboard``) after theirs."""
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            return [(f"{name}{' ' + inner if inner else ''}", found)
                    for name, sub in choices.items()
                    for inner, found in [("", sub), *_subcommands(sub)]]
    return []
