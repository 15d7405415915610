"""bench/api.py keeps working: its smoke mode runs and prints every figure."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_api_benchmark_runs_in_quick_mode():
    done = subprocess.run([sys.executable, str(BENCH / "api.py"), "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for line in ("ml_dash buffer()", "median of per-round ratios", "ml_dash log_summary, mean",
                 "ml_dash log_summary, all 13", "ml_dash params.set, 1000 keys",
                 "ml_dash params.set, 1 key into 1000", "ml_dash files.upload",
                 "ml_dash files.download"):
        assert line in done.stdout


def test_buffer_instruction_script_runs():
    for what in ("floor", "buffer"):
        subprocess.run([sys.executable, str(BENCH / "buffer_instructions.py"), what, "1000"],
                       check=True, timeout=120)
