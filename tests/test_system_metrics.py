"""The system stream: sampled on a thread, committed with the run, stopped with it."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime

import pytest

from ml_dash import RUN, ConfigurationError, Experiment, RunNotStartedError, load

psutil = pytest.importorskip("psutil")

COLUMNS = ("cpu_percent", "process_cpu_percent", "memory_percent", "memory_used_mb", "process_rss_mb")


def _nvml_answers():
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:
        return False
    pynvml.nvmlShutdown()
    return True


def _seconds(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _samplers():
    return [t for t in threading.enumerate() if t.name.startswith("ml_dash system metrics")]


def test_a_run_with_a_short_interval_has_sane_rows(dash_root):
    with Experiment("a/sys/run", dash_root=dash_root, system_metrics=0.05).run as exp:
        assert exp.system_metrics.running and exp.system_metrics.interval == 0.05
        time.sleep(0.5)
    assert not exp.system_metrics.running and not _samplers()
    with load("a/sys/run", dash_root=dash_root) as view:
        system = view.metrics("system")
        assert len(system) >= 5
        columns = system.columns()
        record = view.info
    for key in COLUMNS:
        assert key in columns and not any(map(math.isnan, columns[key])), key
    assert ((0 <= columns["cpu_percent"]) & (columns["cpu_percent"] <= 100)).all()
    assert ((0 < columns["memory_percent"]) & (columns["memory_percent"] <= 100)).all()
    assert (columns["process_rss_mb"] > 1).all()  # an interpreter holds megabytes
    assert (columns["process_rss_mb"] * 1e6 < psutil.virtual_memory().total).all()
    for key in ("disk_read_mb_per_s", "net_recv_mb_per_s"):
        if key in columns:
            assert (columns[key] >= 0).all()
    steps = columns["_ts"][1:] - columns["_ts"][:-1]
    assert (steps > 0).all() and 0.03 < float(steps[:-1].mean()) < 0.3  # the last: taken at stop
    assert columns["_ts"][-1] <= _seconds(record["endedAt"])  # nothing sampled after the end
    if not _nvml_answers():  # this machine: no NVIDIA driver, so no GPU columns and no message
        assert not [key for key in columns if key.startswith("gpu")]
        with load("a/sys/run", dash_root=dash_root) as view:
            assert view.logs.read()["data"] == []


def test_a_run_shorter_than_the_interval_still_has_its_last_sample(dash_root):
    with Experiment("a/sys/short", dash_root=dash_root, system_metrics=True).run:
        pass
    with load("a/sys/short", dash_root=dash_root) as view:
        assert len(view.metrics("system")) == 1


def test_start_and_stop_on_a_started_run(dash_root):
    with Experiment("a/sys/manual", dash_root=dash_root).run as exp:
        assert not exp.system_metrics.running and exp.system_metrics.interval is None
        exp.system_metrics.start(interval=0.02)
        exp.system_metrics.start(interval=0.03)  # a new interval replaces the running one
        assert exp.system_metrics.interval == 0.03 and len(_samplers()) == 1
        time.sleep(0.2)
        exp.system_metrics.stop()
        assert not exp.system_metrics.running
        exp.flush()
        counted = len(exp.metrics("system"))
        time.sleep(0.15)
        exp.flush()
        assert len(exp.metrics("system")) == counted >= 3  # nothing logged once stop() returned
        exp.system_metrics.stop()  # again: nothing to do


def test_launch_setting_turns_it_on(dash_root, monkeypatch):
    monkeypatch.setattr(RUN, "system_metrics", 0.05)
    with Experiment("a/sys/launch", dash_root=dash_root).run as exp:
        assert exp.system_metrics.interval == 0.05
    with Experiment("a/sys/off", dash_root=dash_root, system_metrics=False).run as exp:
        assert not exp.system_metrics.running


@pytest.mark.parametrize("value", ["yes", 0, -1.0, math.nan, math.inf, [5]])
def test_bad_settings_are_named_before_anything_is_written(dash_root, value):
    with pytest.raises(ConfigurationError, match="system_metrics must be .*" + type(value).__name__):
        Experiment("a/sys/bad", dash_root=dash_root, system_metrics=value)
    assert not os.path.exists(os.path.join(dash_root, "a"))


def test_start_needs_a_started_run_and_seconds(dash_root):
    exp = Experiment("a/sys/unstarted", dash_root=dash_root)
    with pytest.raises(RunNotStartedError, match="not started"):
        exp.system_metrics.start()
    with exp.run:
        with pytest.raises(ConfigurationError, match=r"interval=\.\.\.\) .*str"):
            exp.system_metrics.start(interval="5")
        with pytest.raises(ConfigurationError, match="call stop"):
            exp.system_metrics.start(interval=False)
    with pytest.raises(RunNotStartedError, match="closed"):
        exp.system_metrics.start()


def test_a_failed_run_stops_the_sampler(dash_root):
    with pytest.raises(ValueError, match="boom"):
        with Experiment("a/sys/failed", dash_root=dash_root, system_metrics=0.02).run as exp:
            time.sleep(0.1)
            raise ValueError("boom")
    assert not exp.system_metrics.running and not _samplers()
    with load("a/sys/failed", dash_root=dash_root) as view:
        assert view.status == "FAILED" and len(view.metrics("system")) >= 2


def test_a_failing_probe_stops_alone_with_a_log_record(dash_root, monkeypatch):
    with Experiment("a/sys/probe", dash_root=dash_root, system_metrics=0.02).run as exp:
        time.sleep(0.1)

        def broken(*args, **kwargs):
            raise PermissionError("no access to /proc/vmstat")
        monkeypatch.setattr(psutil, "virtual_memory", broken)
        time.sleep(0.1)
        assert exp.system_metrics.running  # the other probes go on
        monkeypatch.setattr(psutil, "cpu_percent", broken)
        monkeypatch.setattr(psutil.Process, "cpu_percent", broken)
        monkeypatch.setattr(psutil.Process, "memory_info", broken)
        monkeypatch.setattr(psutil, "disk_io_counters", broken)
        monkeypatch.setattr(psutil, "net_io_counters", broken)
        deadline = time.monotonic() + 5
        while exp.system_metrics.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not exp.system_metrics.running  # no probe left: the sampler ended by itself
        exp.metrics("train").log(loss=0.5)  # the run goes on
    with load("a/sys/probe", dash_root=dash_root) as view:
        warnings = [r["message"] for r in view.logs.read(level="warn")["data"]]
        system = view.metrics("system").columns()
        assert len(view.metrics("train")) == 1 and view.status == "COMPLETED"
    assert len([m for m in warnings if "memory probe failed" in m and "no access" in m]) == 1
    assert any("cpu probe failed" in m for m in warnings)
    assert math.isnan(system["memory_percent"][-1]) and not math.isnan(system["memory_percent"][0])


def test_the_training_loop_and_the_sampler_share_the_run(dash_root):
    """A sampler every 10 ms beside a loop that logs and flushes: every point of both stored once."""
    with Experiment("a/sys/busy", dash_root=dash_root, system_metrics=0.01).run as exp:
        train = exp.metrics("train")
        step, until = 0, time.monotonic() + 0.3
        while time.monotonic() < until:
            train.log(step=step, loss=1 / (step + 1))
            if step % 50 == 0:
                exp.flush()
            step += 1
        samples_seen = exp.system_metrics.running
    assert samples_seen
    with load("a/sys/busy", dash_root=dash_root) as view:
        steps = view.metrics("train").column("step")
        assert steps.tolist() == list(range(step))
        assert len(view.metrics("system")) >= 10
    assert exp.check().ok


def test_missing_psutil_names_the_extra(dash_root):
    script = textwrap.dedent("""
        import sys
        sys.modules["psutil"] = None  # as if not installed
        from ml_dash import Experiment
        try:
            Experiment("a/sys/nopsutil", dash_root=sys.argv[1], system_metrics=True)
        except ImportError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", script, dash_root], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "system_metrics this needs psutil, from the 'system' extra" in done.stdout
    assert "pip install" in done.stdout
    assert not os.path.exists(os.path.join(dash_root, "a"))


SIGTERMED = """
import sys, threading, time
from ml_dash import Experiment
try:
    with Experiment("a/sys/term", dash_root=sys.argv[1], system_metrics=0.02).run as exp:
        print("ready", flush=True)
        while True:
            exp.metrics("train").log(loss=0.1)
            time.sleep(0.001)
except KeyboardInterrupt:
    print("threads:", [t.name for t in threading.enumerate()], flush=True)
"""


def test_sigterm_stops_the_sampler_and_keeps_its_rows(dash_root):
    child = subprocess.Popen([sys.executable, "-c", SIGTERMED, dash_root], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert "threads:" in out and "ml_dash system metrics" not in out
    with load("a/sys/term", dash_root=dash_root) as view:
        assert view.status == "CANCELLED"
        stamps = view.metrics("system").column("_ts")
        ended = view.launches[-1]["endedAt"]
    assert len(stamps) >= 5 and stamps[-1] <= _seconds(ended)


def test_a_probe_warning_is_one_record_when_the_console_is_captured(dash_root, monkeypatch):
    def broken(*args, **kwargs):
        raise PermissionError("refused")
    monkeypatch.setattr(psutil, "virtual_memory", broken)
    with Experiment("a/sys/captured", dash_root=dash_root, system_metrics=0.02, capture_console=True).run:
        time.sleep(0.1)
    with load("a/sys/captured", dash_root=dash_root) as view:
        messages = [r["message"] for r in view.logs.read()["data"]]
    assert len([m for m in messages if "memory probe failed" in m]) == 1, messages


@pytest.mark.parametrize("timeout", ["2", math.nan, -1, [2]])
def test_a_bad_stop_timeout_is_named_and_leaves_the_sampler_running(dash_root, timeout):
    with Experiment("a/sys/badstop", dash_root=dash_root, system_metrics=0.02).run as exp:
        with pytest.raises(ConfigurationError, match=f"timeout=.*{type(timeout).__name__}"):
            exp.system_metrics.stop(timeout=timeout)
        assert exp.system_metrics.running
        exp.system_metrics.stop(timeout=math.inf)  # as long as it takes: the last sample is quick
        assert not exp.system_metrics.running and not _samplers()


def test_numpy_numbers_are_intervals(dash_root):
    numpy = pytest.importorskip("numpy")
    with Experiment("a/sys/numpy", dash_root=dash_root, system_metrics=numpy.int64(5)).run as exp:
        assert exp.system_metrics.interval == 5.0
        exp.system_metrics.start(interval=numpy.float32(0.5))
        assert exp.system_metrics.interval == 0.5
        with pytest.raises(ConfigurationError, match="got bool"):
            exp.system_metrics.start(interval=numpy.bool_(True))


def test_threads_starting_the_sampler_at_once_leave_one_that_stop_ends(dash_root):
    # Two start() at once each made a sampler, and one of them was never stopped (or
    # stop() joined a thread not started yet: RuntimeError in the caller).
    with Experiment("a/sys/race", dash_root=dash_root).run as exp:
        errors = []
        for _ in range(10):
            barrier = threading.Barrier(6)

            def start():
                barrier.wait()
                try:
                    exp.system_metrics.start(interval=0.01)
                except Exception as exc:  # noqa: BLE001 - collected for the assertion
                    errors.append(exc)

            threads = [threading.Thread(target=start) for _ in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert len(_samplers()) == 1
        exp.system_metrics.stop()
        assert errors == [] and _samplers() == []
