"""bench/system_metrics.py keeps working: its smoke run prints every table and figure."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "system_metrics.py"


def test_quick_run_prints_the_loop_tables_and_the_costs():
    pytest.importorskip("psutil")
    done = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = dict(re.findall(r"^\| (off|off, again|every 0\.1 s|every 5 s) \|(.*)$", done.stdout, re.M))
    assert set(rows) == {"off", "off, again", "every 0.1 s", "every 5 s"}
    assert int(rows["every 0.1 s"].split("|")[-2]) >= 1  # it sampled during its rounds
    assert re.search(r"^one sample: \d+ us \(median\) for \d+ columns", done.stdout, re.M)
    assert re.search(r"^run context: first collect [\d.]+ ms", done.stdout, re.M)
