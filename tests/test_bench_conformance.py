"""bench/conformance.py counts what it says: a made-up reference suite with one test of
each kind (passing, failing, remote, reading the reference's files, in an excluded file,
in a file that fails to import) gives the expected table on this package."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def write(folder, name, text):
    (folder / name).write_text(textwrap.dedent(text))


def test_conformance_counts_by_area_and_leaves_out_what_does_not_count(tmp_path):
    tests = tmp_path / "reference" / "test"
    tests.mkdir(parents=True)
    write(tests, "conftest.py", """
        import pytest

        @pytest.fixture
        def local_experiment(tmp_path):
            from ml_dash import Experiment
            return lambda prefix: Experiment(prefix=prefix, dash_root=str(tmp_path))
    """)
    write(tests, "test_tracks.py", """
        import pytest

        def test_logs_a_point(local_experiment):
            with local_experiment("tom/p/e").run as exp:
                exp.metrics("train").log(loss=0.5).flush()
                assert len(exp.metrics("train")) == 1

        def test_fails():
            assert 1 == 2, "on purpose"

        @pytest.mark.remote
        def test_needs_a_server():
            raise AssertionError("never run")

        def test_reads_layout(tmp_path):
            assert (tmp_path / "parameters.json").exists()
    """)
    write(tests, "test_cli_api.py", """
        def test_cli():
            raise AssertionError("never run")
    """)
    write(tests, "test_flatten_unflatten.py", """
        from ml_dash.no_such_module import flatten

        class TestFlatten:
            def test_a(self):
                pass

            def test_b(self):
                pass
    """)
    out = tmp_path / "outcomes.json"
    done = subprocess.run([sys.executable, str(BENCH / "conformance.py"), str(tests.parent), "--json", str(out),
                           "-v", "--list"], capture_output=True, text=True, timeout=300, check=True)
    assert "| tracks | 1 | 2 |" in done.stdout, done.stdout
    assert "| params | 0 | 2 |" in done.stdout, done.stdout
    assert "| **all** | **1** | **4** |" in done.stdout, done.stdout
    outcomes = {r["test"]: r for r in json.loads(out.read_text())}
    assert outcomes["test/test_tracks.py::test_logs_a_point"]["outcome"] == "passed"
    assert outcomes["test/test_tracks.py::test_fails"]["outcome"] == "failed"
    assert "on purpose" in outcomes["test/test_tracks.py::test_fails"]["why"]
    assert outcomes["test/test_tracks.py::test_needs_a_server"]["outcome"] == "excluded"
    assert "own files" in outcomes["test/test_tracks.py::test_reads_layout"]["why"]
    assert outcomes["test/test_flatten_unflatten.py::TestFlatten::test_b"]["outcome"] == "error"
    assert not any("test_cli_api" in name and r["outcome"] != "excluded" for name, r in outcomes.items())
