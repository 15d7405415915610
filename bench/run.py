"""ml_dash against the floors and the trackers users would pick instead, in one command.

    python bench/run.py                      # everything, N = 100,000 steps
    python bench/run.py --quick              # smoke run: small N, 1 repeat
    python bench/run.py --systems ml_dash floor --steps 20000
    python bench/run.py --reuse              # keep earlier peer figures for the same N

Peers run in their own virtual environments under ``bench/.venvs`` (made on
first use by ``bench/envs.py``; ``--no-install`` skips that). Writes
``bench/results/<date>-<machine>.md`` with a PNG beside it and, for full
runs, ``docs/benchmarks.md``.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import catalog  # noqa: E402
import envs  # noqa: E402
import plot  # noqa: E402
import report  # noqa: E402
import runner  # noqa: E402

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks.md"
# A smoke run spends at most half a second on slow point reads and polls briefly.
QUICK = {"budget": 0.5, "interval": 0.1, "polls": 3}


def machine(args):
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return {"name": platform.node() or "machine", "date": datetime.date.today().isoformat(),
            "steps": args.steps, "repeats": args.repeats,
            "description": f"{os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB RAM, "
                           f"{platform.system()} {platform.release()}, Python {platform.python_version()}"}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 steps, 1 repeat")
    parser.add_argument("--systems", nargs="*", help="prefixes of config keys, modules or kinds "
                        "(floor, ml_dash, peer); default all")
    parser.add_argument("--steps", type=int, help="N, default 100,000 (2,000 with --quick)")
    parser.add_argument("--repeats", type=int, help="write runs per system, default 3 (1 with --quick)")
    parser.add_argument("--read-repeats", type=int, help="read runs per system, default 3 (1 with --quick)")
    parser.add_argument("--reuse", action="store_true", help="reuse cached peer results for the same N")
    parser.add_argument("--no-install", action="store_true", help="never create peer venvs")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    parser.add_argument("--docs", type=Path, help=f"page to update (default {DOCS} unless --quick)")
    parser.add_argument("--report-only", type=Path, metavar="JSON",
                        help="measure nothing: re-render the pages from a results JSON of an earlier run")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temp dir)")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2_000 if args.quick else 100_000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.read_repeats = args.read_repeats or (1 if args.quick else 3)
    if args.docs is None and not args.quick:
        args.docs = DOCS
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.report_only:
        results = json.loads(args.report_only.read_text())
        publish(args, argv, results)
        return results
    configs = catalog.select(args.systems)
    if not args.no_install:
        for venv in dict.fromkeys(c.venv for c in configs if c.venv):
            print(f"environment {venv}: {envs.install(venv)}", flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="ml_dash-peers-"))
    cache = HERE / ".work" / "results"
    results = []
    for config in configs:
        result = runner.measure_or_reuse(config, args.steps, args.repeats, args.read_repeats,
                                         work, cache, args.reuse, QUICK if args.quick else None)
        results.append(result)
        summary = report.write_cell(result) if "write_us" in result else "; ".join(result["errors"])
        print(f"{config.key:18s} {summary}", flush=True)
    publish(args, argv, results)
    return results


def publish(args, argv, results):
    """Write the results page, its JSON and plot, and the docs page."""
    info = machine(args)
    if args.report_only:
        argv = [a for a in argv if a != "--report-only" and a != str(args.report_only)]
        info["steps"] = max(r.get("requested_steps", r.get("steps", 0)) for r in results)
    command = "python bench/run.py " + " ".join(shlex.quote(a) for a in argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{info['date']}-{info['name']}"
    png = args.out / f"{stem}.png"
    drawn = not args.no_plot and plot.plot(results, png)
    page = report.document(results, info, command.strip(), png.name if drawn else None)
    (args.out / f"{stem}.md").write_text(page)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out / stem}.md" + ("" if drawn else " (no plot)"))
    if args.docs:
        docs_page(args.docs, results, info, command, png if drawn else None)
        print(f"updated {args.docs}")


START, END = "<!-- results:start -->", "<!-- results:end -->"


def docs_page(path, results, info, command, png):
    """Replace the generated part of the user-facing page; the prose around it stays.

    The plot is copied beside the page. A page without the markers is
    created with them.
    """
    image = None
    if png:
        image = "benchmarks.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / image).write_bytes(png.read_bytes())
    body = report.document(results, info, command.strip(), image).split("\n", 1)[1].lstrip("\n")
    generated = f"{START}\n## Results: {info['date']} on {info['name']}\n\n{body}{END}"
    old = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        page = head + generated + rest.split(END, 1)[1]
    else:
        page = old.rstrip("\n") + "\n\n" + generated + "\n"
    path.write_text(page)


if __name__ == "__main__":
    main()
