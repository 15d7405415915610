"""bench/integrations.py keeps working: its smoke run reports every measurement for each
framework that is installed."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "integrations.py"
FIGURE = r"[-+]?\d+\.\d+"


@pytest.mark.parametrize("framework", ["lightning", "keras"])
def test_quick_run_reports_the_cost_per_step(framework):
    if importlib.util.find_spec(framework) is None:  # not imported here: the bench does, in its process
        pytest.skip(f"could not import {framework!r}: not installed")
    done = subprocess.run([sys.executable, "-W", "ignore", str(BENCH), "--quick", "--framework", framework],
                          check=True, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith(framework)]
    assert len(lines) == 2, done.stdout
    assert re.fullmatch(rf"{framework}, the hook alone: median {FIGURE} us per step .*", lines[0])
    found = re.fullmatch(rf"{framework}, alternating steps: step {FIGURE} us; the integration costs {FIGURE} us "
                         rf"per step \({FIGURE}%\): {FIGURE} us with it, {FIGURE} us in the null control; "
                         rf"medians of (\d+) and (\d+) steps", lines[1])
    assert found and int(found[1]) >= 10 and int(found[2]) >= 10, lines[1]
