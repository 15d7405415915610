"""Crash tests: writers SIGKILLed at random moments and at named points of the write path.

Each case runs ``tests/crash_loop.py``'s loop: after every kill the store must
equal the oracle (no point lost that was flushed, none damaged or
duplicated, no snapshot split across streams) and the next writer must start
without any unlock.  ``python tests/crash_loop.py --long`` runs 1,000 kills.
"""

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import crash_loop  # noqa: E402


def test_random_kills_lose_nothing_flushed(tmp_path):
    summary = crash_loop.run(16, seed=11, dash_root=str(tmp_path), full_every=8, named_share=0,
                             rotate=20_000)
    assert summary["counts"]["a"] > 0


@pytest.mark.parametrize("point", crash_loop.NAMED)
def test_kill_at_each_named_point(tmp_path, point):
    summary = crash_loop.run(3, seed=crash_loop.NAMED.index(point), dash_root=str(tmp_path), full_every=3,
                             named_share=1.0, points=[point])
    assert summary["named_fired"].get(point, 0) >= 1, summary  # the kill did happen there


def test_unknown_fault_spec_is_refused(tmp_path):
    env = dict(os.environ, ML_DASH_FAULT="nowhere:kill")
    out = subprocess.run([sys.executable, "-c", "import ml_dash"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "ML_DASH_FAULT='nowhere:kill'" in out.stderr
