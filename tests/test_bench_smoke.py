"""The benchmark harness keeps working: ``bench/run.py --quick`` on ml_dash and
the floors (no peers, no environments made) writes a sensible report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_quick_run_writes_report_for_ml_dash_and_floors(tmp_path):
    out = tmp_path / "results"
    subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--steps", "300", "--no-install", "--no-plot",
                    "--systems", "floor", "ml_dash-A", "ml_dash-B", "--out", str(out),
                    "--work", str(tmp_path / "work")],
                   check=True, capture_output=True, text=True, timeout=120)
    pages = list(out.glob("*.md"))
    assert len(pages) == 1
    results = {r["key"]: r for r in json.loads(pages[0].with_suffix(".json").read_text())}
    assert {"list", "lmdb-A", "lmdb-B", "jsonl-A", "jsonl-B", "memmap-A", "memmap-B",
            "ml_dash-A", "ml_dash-B"} <= set(results)
    for result in results.values():
        assert result["errors"] == [], result
        assert result["steps"] == 300
        assert result["write_us"]["min"] <= result["write_us"]["median"] <= result["write_us"]["max"]
        assert result["rss_mib"] > 0
    for key in ("ml_dash-A", "ml_dash-B", "lmdb-A", "memmap-B"):
        result = results[key]
        assert result["counts"] == {"train": 300, "eval": 300, "root": 300}
        assert result["disk_bytes_per_step"] > 0
        assert result["full_s"] > 0 and result["random_s"] > 0
        assert result["live"]["polls"] == result["live"]["consistent"] > 0, result["live"]
    page = pages[0].read_text()
    assert "| ml_dash (default durability) | A |" in page
    assert "python bench/run.py --quick" in page
    assert sum(line.startswith("| floor: ") for line in page.splitlines()) == 7


def test_ab_compares_two_trees_in_interleaved_rounds():
    tree = str(BENCH.parent)
    done = subprocess.run([sys.executable, str(BENCH / "ab.py"), tree, tree, "--rounds", "2", "--steps", "200"],
                          check=True, capture_output=True, text=True, timeout=120)
    rows = {line.split("  ")[0]: line for line in done.stdout.splitlines()}
    for workload in ("step + flush", "step, flush every 100", "log() alone"):
        assert workload in rows and rows[workload].rstrip().endswith(tuple("0123456789")), done.stdout


def test_tracks_bench_builds_once_and_reports_every_workload(tmp_path):
    command = [sys.executable, str(BENCH / "tracks.py"), "--entries", "3000", "--repeats", "3",
               "--dir", str(tmp_path / "work"), "--write", str(tmp_path / "tracks.md")]
    first = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    assert first.stdout.startswith("built 3,000 entries")
    again = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    assert "built" not in again.stdout  # the store is reused
    page = (tmp_path / "tracks.md").read_text()
    for workload in ("findByTime(t)", "findByTime([100 times])", "at the start", "at the middle",
                     "at the end"):
        assert workload in page


def test_scale_sql_bench_builds_once_and_reports_every_figure(tmp_path):
    pytest.importorskip("duckdb")
    command = [sys.executable, str(BENCH / "scale_sql.py"), "--quick", "--root", str(tmp_path),
               "--processes", "1", "--no-summaries"]
    first = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout
    for figure in ("sql max(loss) group by prefix, 5 runs", "list_experiments, 20 runs",
                   "list_experiments, 40 runs", "sql on params_wide, 40 runs",
                   "list_experiments without summaries, 20 runs"):
        assert figure in first, first
    again = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout
    assert "built" not in again  # the stores are reused
