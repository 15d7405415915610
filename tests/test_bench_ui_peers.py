"""bench/ui_peers.py without the peer venvs: a peer that is not installed is a row saying so,
not a crash, and the curve both peers are given holds its one spike."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load():
    spec = importlib.util.spec_from_file_location("ui_peers", BENCH / "ui_peers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_and_failed_venvs_are_reported(tmp_path, monkeypatch):
    ui_peers = _load()
    venvs = tmp_path / "venvs"
    (venvs / "mlflow").mkdir(parents=True)
    (venvs / "mlflow" / "install.log").write_text("ERROR: no matching distribution\n")
    (venvs / "mlflow" / "failed").write_text("pip install mlflow")
    monkeypatch.setattr(ui_peers.envs, "VENVS", venvs)
    rows = ui_peers.measure_peers(points=100, rounds=1, workdir=tmp_path / "work")
    assert [row["peer"] for row in rows] == ["tensorboard", "tensorboard", "mlflow", "mlflow"]
    assert rows[0]["status"] == rows[1]["status"] == "missing"
    assert all(row["status"].startswith("failed: ERROR: no matching") for row in rows[2:])
    assert all(row["get_ms"] is None for row in rows)
    printed = ui_peers.table(rows)
    assert printed.count("\n") == len(rows) + 1 and "missing" in printed


def test_curve_has_one_spike():
    ui_peers = _load()
    assert ui_peers.spike_step(1_000_000) == 777_777
    values = ui_peers.curve(1_000)
    spikes = [step for step, value in enumerate(values) if value >= 99.5]
    assert spikes == [ui_peers.spike_step(1_000)] and values.max() == 100.0
