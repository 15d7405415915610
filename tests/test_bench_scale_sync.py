"""bench/scale_sync.py keeps working: its smoke mode syncs, syncs again and prints each floor."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_scale_sync_benchmark_runs_in_quick_mode():
    pytest.importorskip("pyarrow")
    done = subprocess.run([sys.executable, str(BENCH / "scale_sync.py"), "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for line in ("sync, first (into an empty folder)", "sync, again with nothing new",
                 "floor: encode to memory, sync's options", "floor: write files, uncompressed, fsync each",
                 "floor: write files, snappy"):
        assert line in done.stdout
