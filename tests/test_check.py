"""The integrity checker and compaction, on stores damaged the way disks damage them."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ml_dash
from ml_dash import Experiment, load

PREFIX = "w/torn"


def column_file(dash_root, stream_id, column_id):
    return os.path.join(dash_root, *PREFIX.split("/"), "columns", str(stream_id), f"{column_id}.f64")


def garble(path, index):
    """Overwrite slot ``index`` of a column file with bytes no point wrote."""
    with open(path, "r+b") as f:
        f.seek(index * 8)
        f.write(b"\x07" * 8)


def write_run(dash_root, points):
    with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        for i in range(points):
            exp.metrics("train").log(step=i, loss=1.0 / (i + 1), name=f"p{i}").flush()


KILLED_WRITER = textwrap.dedent("""
    import sys, time, ml_dash
    exp = ml_dash.Experiment(prefix="w/torn", dash_root=sys.argv[1], sync_interval=3600)
    exp.run.start()
    for i in range(int(sys.argv[2])):
        exp.metrics("train").log(step=i, loss=1.0 / (i + 1), name=f"p{i}").flush()
    print("flushed", flush=True)
    time.sleep(60)
""")


def test_clean_run_checks_ok_and_reports_counts(dash_root):
    write_run(dash_root, 50)
    report = ml_dash.check(PREFIX, dash_root=dash_root)
    assert report.ok and not report.problems and not report.repaired
    assert report.streams == {"train": 50}
    assert report.points == 50 and report.columns == 3  # _ts, step, loss


def test_garbled_slot_inside_the_watermark_is_found_and_repaired(dash_root):
    # Closed cleanly with more points than the next open would rebuild from
    # the rows: close records a watermark that covers every point.
    write_run(dash_root, 5000)
    garble(column_file(dash_root, 1, 2), 17)  # column 2 is "loss"
    reopened = Experiment(prefix=PREFIX, dash_root=dash_root)
    with reopened.run:  # opening trusts columns below the watermark
        assert reopened.metrics("train").column("loss")[17] != 1.0 / 18
        report = reopened.check()
    assert not report.ok
    assert "'loss'" in report.problems[0] and "point 17" in report.problems[0]
    repaired = ml_dash.check(PREFIX, dash_root=dash_root, repair=True)
    assert repaired.ok and len(repaired.repaired) == 1
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok
    assert load(PREFIX, dash_root=dash_root).metrics("train").column("loss")[17] == 1.0 / 18


def test_a_small_run_closed_cleanly_rebuilds_its_few_slots_at_the_next_open(dash_root):
    # Its close synced the columns and the rows together, once, and left the
    # watermark behind them: the next writer rebuilds those slots from the rows.
    write_run(dash_root, 50)
    garble(column_file(dash_root, 1, 2), 17)
    with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        assert exp.metrics("train").column("loss")[17] == 1.0 / 18
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok


def test_garbled_slots_past_the_watermark_are_repaired_at_open(dash_root):
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, dash_root, "40"],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "flushed"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    for index in (3, 39):  # never synced: past the watermark
        garble(column_file(dash_root, 1, 1), index)
    assert not ml_dash.check(PREFIX, dash_root=dash_root).ok
    with Experiment(prefix=PREFIX, dash_root=dash_root).run as exp:
        assert np.array_equal(exp.metrics("train").column("step"), np.arange(40))
    assert ml_dash.check(PREFIX, dash_root=dash_root).ok


def test_missing_and_truncated_column_files_are_rebuilt(dash_root):
    write_run(dash_root, 30)
    os.remove(column_file(dash_root, 1, 1))
    with open(column_file(dash_root, 1, 2), "r+b") as f:
        f.truncate(8 * 10)
    report = ml_dash.check(PREFIX, dash_root=dash_root)
    assert len(report.problems) == 2
    assert all("column file" in text for text in report.problems)
    with pytest.raises(ml_dash.StorageError, match="check"):
        load(PREFIX, dash_root=dash_root).metrics("train").column("step")
    assert ml_dash.check(PREFIX, dash_root=dash_root, repair=True).ok
    view = load(PREFIX, dash_root=dash_root)
    assert np.array_equal(view.metrics("train").column("step"), np.arange(30))
    assert np.array_equal(view.metrics("train").column("loss"), 1.0 / (np.arange(30) + 1))


def test_repair_and_compaction_refuse_a_live_writer(exp, dash_root):
    exp.metrics("train").log(x=1).flush()
    assert exp.check().ok  # a read-only check is fine while writing
    with pytest.raises(ml_dash.ExperimentError, match="close the run"):
        exp.check(repair=True)
    child = textwrap.dedent("""
        import sys, ml_dash
        for call in (lambda: ml_dash.check("alice/proj/exp", sys.argv[1], repair=True),
                     lambda: ml_dash.compact("alice/proj/exp", sys.argv[1])):
            try:
                call()
            except ml_dash.WriterLockedError as exc:
                print("locked", "pid=" in str(exc))
    """)
    out = subprocess.run([sys.executable, "-c", child, dash_root], capture_output=True, text=True)
    assert out.stdout.split() == ["locked", "True", "locked", "True"], out.stderr


def test_unknown_experiment_is_a_clear_error(dash_root):
    with pytest.raises(FileNotFoundError, match="nobody/here"):
        ml_dash.check("nobody/here", dash_root=dash_root)
    with pytest.raises(FileNotFoundError, match="nobody/here"):
        ml_dash.compact("nobody/here", dash_root=dash_root)
