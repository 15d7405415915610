"""Column files and open descriptors: a run's open files do not grow with its columns.

The wide-run tests run in a subprocess whose descriptor limit is set to the
common 1,024 first, the way most machines start a training script.
"""

import errno
import gc
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ml_dash import Experiment, StorageError, load

LIMIT = textwrap.dedent("""
    import json, os, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    import numpy as np
    import ml_dash
    root = sys.argv[1]

    def open_fds():
        return len(os.listdir("/proc/self/fd"))
""")

needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


def run_limited(script, dash_root, timeout=60):
    """Run ``script`` after LIMIT in a fresh interpreter; returns its last stdout line."""
    result = subprocess.run([sys.executable, "-c", LIMIT + textwrap.dedent(script), dash_root],
                            check=False, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Too many open files" not in result.stderr, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def wide_values(step, key):
    return step * 10_000 + key


WIDE_WRITER = """
    with ml_dash.Experiment(prefix="wide/run", dash_root=root).run as exp:
        wide = exp.metrics("wide")
        for step in range(4):   # the first call creates all 2,000 columns at once
            wide.log(**{f"k{i}": step * 10_000 + i for i in range(2000)}).flush()
    print("written")
"""

WIDE_READER = """
    with ml_dash.load("wide/run", dash_root=root) as view:
        wide = view.metrics("wide")
        columns = wide.columns()            # every column mapped, all held at once
        assert len(columns) == 2001, len(columns)
        for i in range(2000):
            assert columns[f"k{i}"].tolist() == [step * 10_000 + i for step in range(4)], i
        assert wide.read(3, 1)["data"][0]["data"]["k1999"] == 31_999
        print("read")
"""


def test_one_log_call_with_2000_numeric_keys_under_1024_descriptors(dash_root):
    assert run_limited(WIDE_WRITER, dash_root) == "written"
    with load("wide/run", dash_root=dash_root) as view:
        wide = view.metrics("wide")
        assert len(wide) == 4 and len(wide.keys()) == 2001
        for i in (0, 1013, 1999):
            assert wide.column(f"k{i}").tolist() == [wide_values(step, i) for step in range(4)]


def test_reader_maps_2000_columns_under_1024_descriptors(dash_root):
    with Experiment(prefix="wide/run", dash_root=dash_root).run as exp:
        for step in range(4):
            exp.metrics("wide").log(**{f"k{i}": wide_values(step, i) for i in range(2000)}).flush()
    assert run_limited(WIDE_READER, dash_root) == "read"


def test_600_streams_under_1024_descriptors(dash_root):
    writer = """
        with ml_dash.Experiment(prefix="many/run", dash_root=root).run as exp:
            for step in range(2):
                for s in range(600):
                    exp.metrics(f"s{s}").log(loss=s + step / 10, acc=-s)
                exp.flush()
        print("written")
    """
    reader = """
        view = ml_dash.load("many/run", dash_root=root)
        held = [view.metrics(f"s{s}").columns() for s in range(600)]   # 1,800 mapped columns
        for s, columns in enumerate(held):
            assert columns["loss"].tolist() == [s, s + 0.1] and columns["acc"].tolist() == [-s, -s]
            assert len(columns["_ts"]) == 2
        print("read")
    """
    assert run_limited(writer, dash_root) == "written"
    assert run_limited(reader, dash_root) == "read"


@needs_proc
def test_open_descriptors_do_not_grow_with_columns(dash_root):
    script = """
        exp = ml_dash.Experiment(prefix="fds/run", dash_root=root)
        exp.run.start()
        exp.metrics("narrow").log(k0=0).flush()
        view = ml_dash.load("fds/run", dash_root=root)
        view.metrics("narrow").columns()
        narrow = open_fds()
        wide = exp.metrics("wide")
        for step in range(3):
            wide.log(**{f"k{i}": step for i in range(1500)}).flush()
        for s in range(300):
            exp.metrics(f"s{s}").log(loss=s).flush()
        writer_wide = open_fds()
        held = [view.metrics("wide").columns()] + [view.metrics(f"s{s}").columns() for s in range(300)]
        exp.run.complete()
        print(json.dumps([narrow, writer_wide, open_fds()]))
    """
    narrow, writer_wide, reader_wide = json.loads(run_limited(script, dash_root))
    # about 2,100 more columns written, then mapped by a reader: not one more descriptor
    assert writer_wide <= narrow + 1, (narrow, writer_wide)
    assert reader_wide <= narrow + 1, (narrow, reader_wide)


def _mappings_of(path):
    """The lines of /proc/self/maps that map ``path``."""
    with open("/proc/self/maps") as maps:
        return [line for line in maps if line.rstrip().endswith(path)]


@needs_proc
def test_column_array_outlives_its_view_and_the_columns_growth(exp, dash_root):
    stream = exp.metrics("s")
    for step in range(10):
        stream.log(k=step * 1.5)
    exp.flush()
    view = load("alice/proj/exp", dash_root=dash_root)
    held = view.metrics("s").column("k")
    head = view.metrics("s").column("k", start=2, stop=5)
    live = stream.column("k")                     # the writing process's own read path
    view.close()
    del view
    path = os.path.join(dash_root, "alice/proj/exp/columns/1/1.f64")
    # the column (4,096 slots at first) grows four times, each growth a new mapping
    for step in range(10, 40_000):
        stream.log(k=step * 1.5)
        if step % 5000 == 0:
            exp.flush()
    exp.flush()
    gc.collect()
    expected = np.arange(10) * 1.5
    assert held.tolist() == expected.tolist() and float(held.sum()) == float(expected.sum())
    assert head.tolist() == expected[2:5].tolist()
    assert live.tolist() == expected.tolist()
    with load("alice/proj/exp", dash_root=dash_root) as again:
        assert np.array_equal(again.metrics("s").column("k"), np.arange(40_000) * 1.5)
    del again
    gc.collect()
    # the writer's four outgrown mappings are gone; the held arrays keep theirs
    assert len(_mappings_of(path)) <= 3, _mappings_of(path)
    del held, head, live
    gc.collect()
    assert len(_mappings_of(path)) <= 2, _mappings_of(path)  # the writer's current one, and the live read path's


@needs_proc
def test_running_out_of_descriptors_is_said_so_and_loses_nothing(dash_root):
    script = """
        def exhaust():
            hogs = []
            while True:
                try:
                    hogs.append(os.open("/dev/null", os.O_RDONLY))
                except OSError:
                    return hogs

        def failure(call):
            hogs = exhaust()
            try:
                call()
            except ml_dash.StorageError as exc:
                return {"text": str(exc), "errno": exc.errno}
            finally:
                for fd in hogs:
                    os.close(fd)
            return None

        exp = ml_dash.Experiment(prefix="fds/run", dash_root=root, sync_interval=60)
        exp.run.start()
        exp.metrics("s").log(a=1).flush()
        view = ml_dash.load("fds/run", dash_root=root)
        exp.metrics("s").log(a=2, b=20)          # a new column: a new file
        out = {"writer": failure(exp.flush)}
        exp.flush()                              # the same snapshot, now with descriptors
        out["reader"] = failure(lambda: view.metrics("s").column("b"))
        out["b"] = view.metrics("s").column("b").tolist()
        exp.metrics("s").log(a=3).flush()
        exp.run.complete()
        out["a"] = ml_dash.load("fds/run", dash_root=root).metrics("s").column("a").tolist()
        print(json.dumps(out))
    """
    out = json.loads(run_limited(script, dash_root))
    for side in ("writer", "reader"):
        failure = out[side]
        assert failure is not None, side
        assert "ran out of file descriptors" in failure["text"] and "1024" in failure["text"], failure
        assert "repair" not in failure["text"] and "columns/1/" in failure["text"], failure
        assert failure["errno"] == errno.EMFILE
    assert out["a"] == [1, 2, 3]
    assert out["b"][1] == 20 and np.isnan(out["b"][0])


def test_a_read_only_column_cannot_be_made_writable(exp, dash_root):
    exp.metrics("s").log(k=1.0).flush()
    with load("alice/proj/exp", dash_root=dash_root) as view:
        column = view.metrics("s").column("k")
        with pytest.raises(ValueError):
            column[0] = 2.0
        with pytest.raises(ValueError):
            column.flags.writeable = True   # writing a read-only mapping would be a segfault
        assert column.tolist() == [1.0]


def test_truncated_column_file_is_a_storage_error_naming_it(exp, dash_root):
    exp.metrics("s").log(k=1.0).flush()
    exp.run.complete()
    path = os.path.join(dash_root, "alice/proj/exp/columns/1/1.f64")
    os.truncate(path, 0)
    with load("alice/proj/exp", dash_root=dash_root) as view, \
            pytest.raises(StorageError, match=r"1\.f64.*repair=True"):
        view.metrics("s").column("k")


def test_live_experiment_reads_its_wide_columns(dash_root):
    with Experiment(prefix="alice/proj/wide", dash_root=dash_root).run as exp:
        exp.metrics("w").log(**{f"k{i}": i for i in range(300)}).flush()
        assert exp.metrics("w").column("k299").tolist() == [299]


@needs_proc
def test_columns_benchmark_smoke_run():
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "columns.py")
    result = subprocess.run([sys.executable, bench, "--quick"], check=True, capture_output=True,
                            text=True, timeout=60)
    figures = json.loads(result.stdout)
    assert figures["fds_per_1000_columns"] == 0
    assert figures["mappings_left"] <= 2   # outgrown mappings were unmapped
    assert 0 < figures["slot_write_ns"] and 0 < figures["map_us"]
