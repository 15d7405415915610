"""How many of the public ``ml-dash`` package's own API tests pass on this package.

    python bench/conformance.py PATH                 # PATH: a checkout of fortyfive-labs/ml-dash
    python bench/conformance.py PATH -v              # and every test that does not pass, with why
    python bench/conformance.py PATH --target PATH/src --python OTHER_VENV/bin/python
                                                     # the same selection run on the reference itself

Users bring scripts written for the public package; its test suite (``PATH/test``) is the
most honest measure of whether they run unchanged.  The suite is copied to a temporary
folder (so that its ``conftest.py``, which puts ``../src`` on ``sys.path``, finds nothing
there) and run by pytest in a child process whose ``PYTHONPATH`` starts with ``--target``
(default: this checkout), with ``ML_DASH_BUFFER_ENABLED=false`` (the reference's own
switch for its client-side write buffer, which this package does not have).

Which tests count, decided here and printed with ``--list``:

- not marked ``remote`` (those need the reference's server);
- not in a file about the reference's server, command line, login or client buffer
  (:data:`EXCLUDED_FILES`, each with its reason);
- not reading the reference's own files under the dash root (``parameters.json``,
  ``logs.jsonl``...): :data:`LAYOUT` is matched against each test's source.  This
  package stores runs in LMDB; what such a test checks through the files, other tests
  check through the API.

The result is a table of tests passed per area (:data:`AREAS`), and with ``--json OUT``
every selected test's outcome.  Needs pytest and PyJWT (the reference's ``conftest.py``
imports ``jwt``); its video tests need this package's ``video`` extra.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Test files of the reference, by the area of the API they exercise.
AREAS = {
    "tracks": ["test_tracks.py", "test_tracks_new.py", "test_track_slice.py", "test_timestamp_inheritance.py",
               "test_timestamp_inheritance_integration.py", "test_numpy_serialization.py"],
    "files": ["test_files.py", "test_files_new_api.py", "test_duplicate.py", "test_file_upload_download.py",
              "test_save_video.py"],
    "runs and prefixes": ["test_folder_templates.py", "test_run_template_expansion.py", "test_run_folder_setter.py",
                          "test_run_config_master_test.py", "test_folder_fix_complete.py", "test_auto_start.py"],
    "params": ["test_flatten_unflatten.py", "test_params_class_objects.py", "test_params_log_simple.py",
               "test_parameters.py"],
    "experiments, metrics, logs": ["test_basic_session.py", "test_experiment.py", "test_must_start_first.py",
                                   "test_combined_features.py", "test_summary_cache.py",
                                   "test_summary_cache_comprehensive.py", "test_optional_metric_name.py",
                                   "test_integration.py", "test_log_stdout_stderr.py", "test_logging.py"],
}

EXCLUDED_FILES = {
    "test_cli_api.py": "the reference's command line against its server",
    "test_cli_create.py": "the reference's command line against its server",
    "test_cli_profile.py": "the reference's login profile",
    "test_cli_upload.py": "uploads to the reference's server",
    "test_token_expiration.py": "the reference's login tokens",
    "test_buffering.py": "the internals of the reference's client-side write buffer",
    "test_buffer_queue_pressure.py": "the internals of the reference's client-side write buffer",
}

# A test whose source names one of these reads the reference's on-disk layout.
LAYOUT = (r'experiment\.json|parameters\.json|logs\.jsonl|data\.jsonl|metadata\.json'
          r'|/ *"(metrics|tracks|files|logs)"|/(metrics|tracks|files|logs)"')

# Loaded by pytest in the child (``-p``): deselects what does not count and records
# every selected test's outcome, one JSON line each.
PLUGIN = '''
import inspect, json, os, re

LAYOUT = re.compile({layout!r})
EXCLUDED = {excluded!r}
OUT = {out!r}


def pytest_collection_modifyitems(config, items):
    kept, dropped = [], []
    for item in items:
        name = item.path.name
        reason = EXCLUDED.get(name)
        if reason is None and item.get_closest_marker("remote") is not None:
            reason = "needs the reference's server (marked remote)"
        if reason is None:
            try:
                source = inspect.getsource(item.function)
            except (OSError, TypeError):
                source = ""
            if LAYOUT.search(source):
                reason = "reads the reference's own files under the dash root"
        (dropped if reason else kept).append((item, reason))
    items[:] = [item for item, _ in kept]
    config.hook.pytest_deselected(items=[item for item, _ in dropped])
    with open(OUT, "a") as out:
        for item, reason in dropped:
            out.write(json.dumps({{"test": item.nodeid, "outcome": "excluded", "why": reason}}) + "\\n")


def pytest_runtest_logreport(report):
    if report.when == "call":
        outcome = report.outcome
    elif report.outcome == "failed":
        outcome = "error"  # in a fixture's setup or teardown
    elif report.outcome == "skipped" and report.when == "setup":
        outcome = "skipped"
    else:
        return
    why = ""
    if outcome != "passed":
        text = str(getattr(report, "longrepr", "") or "")
        lines = [line for line in text.splitlines() if line.startswith("E ")] or text.splitlines()[-1:]
        why = lines[0].lstrip("E ").strip()[:300] if lines else ""
    with open(OUT, "a") as out:
        out.write(json.dumps({{"test": report.nodeid, "outcome": outcome, "why": why}}) + "\\n")
'''


def area_of(nodeid: str) -> str:
    name = nodeid.split("::")[0].rsplit("/", 1)[-1]
    for area, files in AREAS.items():
        if name in files:
            return area
    return "other"


def run_suite(reference: Path, target: Path, python: str, timeout: float) -> list[dict]:
    """Run the reference's tests on the package at ``target``; every test's outcome."""
    tests = reference / "test" if (reference / "test").is_dir() else reference
    if not (tests / "conftest.py").is_file():
        raise SystemExit(f"{reference}: no test/conftest.py here; PATH is a checkout of fortyfive-labs/ml-dash")
    work = Path(tempfile.mkdtemp(prefix="ml_dash-conformance-"))
    try:
        shutil.copytree(tests, work / "test")
        outcomes = work / "outcomes.jsonl"
        (work / "conformance_plugin.py").write_text(PLUGIN.format(
            layout=LAYOUT, excluded=EXCLUDED_FILES, out=str(outcomes)))
        env = dict(os.environ, ML_DASH_BUFFER_ENABLED="false",
                   PYTHONPATH=os.pathsep.join([str(target), str(work)]))
        command = [python, "-m", "pytest", "test", "-p", "conformance_plugin", "-p", "no:cacheprovider",
                   "-q", "--continue-on-collection-errors", "-o", "addopts="]
        has_timeout = subprocess.run([python, "-c", "import pytest_timeout"], capture_output=True).returncode == 0
        if has_timeout:  # one test that hangs fails alone instead of stopping the run
            command += ["--timeout", "120"]
        # The child's cwd is the copy: the suite's files and downloads stay in it.
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        if not outcomes.exists():
            raise SystemExit(f"pytest ran no test (exit {done.returncode}):\n"
                             f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        results: dict[str, dict] = {}
        for line in outcomes.read_text().splitlines():
            result = json.loads(line)
            known = results.get(result["test"])
            if known is None or known["outcome"] == "passed":  # a failing teardown outranks a pass
                results[result["test"]] = result
        found = list(results.values())
        return found + collection_errors(done.stdout, found, work / "test")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def collection_errors(output: str, results: list[dict], tests: Path) -> list[dict]:
    """A file that fails to import (a module it imports at the top is missing) counts
    each test it would have contributed as an error: counted in its source, by the
    same rules as the plugin's."""
    seen = {r["test"].split("::")[0] for r in results}
    found = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] != "ERROR" or not parts[1].startswith("test/") or "::" in parts[1]:
            continue
        path = parts[1]
        if path in seen or path.rsplit("/", 1)[-1] in EXCLUDED_FILES:
            continue
        why = line.split(" - ", 1)[1] if " - " in line else "the file failed to import"
        names = selected_in_source(tests / path.rsplit("/", 1)[-1]) or ["(the file)"]
        found += [{"test": f"{path}::{name}", "outcome": "error", "why": why} for name in names]
    return found


def selected_in_source(path: Path) -> list[str]:
    """Names of the tests of ``path`` that count, read from its source with ``ast``."""
    source = path.read_text()
    lines = source.splitlines()
    layout = re.compile(LAYOUT)
    names = []

    def visit(node, owner=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef) and child.name.startswith("Test"):
                visit(child, f"{child.name}::")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and child.name.startswith("test"):
                remote = any("remote" in ast.unparse(d) for d in child.decorator_list)
                body = "\n".join(lines[child.lineno - 1:child.end_lineno])
                if not remote and not layout.search(body):
                    names.append(owner + child.name)

    visit(ast.parse(source))
    return names


def table(results: list[dict]) -> str:
    rows = []
    total = [0, 0]
    for area in [*AREAS, "other"]:
        mine = [r for r in results if area_of(r["test"]) == area and r["outcome"] != "excluded"]
        if not mine:
            continue
        passed = sum(r["outcome"] == "passed" for r in mine)
        rows.append(f"| {area} | {passed} | {len(mine)} |")
        total[0] += passed
        total[1] += len(mine)
    lines = ["| area | passed | selected |", "|---|---:|---:|", *rows, f"| **all** | **{total[0]}** | **{total[1]}** |",
             "", "(not counted: tests marked remote, the files of EXCLUDED_FILES, tests that read the reference's "
             "own files; --list names those collected)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="a checkout of fortyfive-labs/ml-dash (or its test/ folder)")
    parser.add_argument("--target", type=Path, default=ROOT,
                        help="the folder that holds the ml_dash package to test (default: this checkout)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run the tests with")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds for the whole suite")
    parser.add_argument("--json", type=Path, help="write every test's outcome here")
    parser.add_argument("--list", action="store_true", help="print each test not counted, and why")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each test that does not pass")
    args = parser.parse_args()
    results = run_suite(args.path.resolve(), args.target.resolve(), args.python, args.timeout)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    if args.verbose:
        for r in results:
            if r["outcome"] not in ("passed", "excluded"):
                print(f"{r['outcome'].upper():8} {r['test']}: {r['why']}")
    if args.list:
        for r in results:
            if r["outcome"] == "excluded":
                print(f"excluded {r['test']}: {r['why']}")


if __name__ == "__main__":
    main()
