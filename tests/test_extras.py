"""Hints for a missing extra name a command that installs *this* package's extra.

On the public index the distribution name ``ml-dash`` is another project's, so a hint must
not say ``pip install 'ml-dash[plot]'``.
"""

import os
import shutil
import subprocess
import sys

import pytest

from ml_dash.extras import EXTRAS, install_hint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Extras for working on the project itself, which no hint names.
DEVELOPMENT = {"test", "lint", "bench"}


def test_the_packages_of_each_extra_agree_with_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        declared = tomllib.load(f)["project"]["optional-dependencies"]
    assert {name: tuple(packages) for name, packages in declared.items()
            if name not in DEVELOPMENT} == EXTRAS


def test_from_a_checkout_the_hint_installs_the_checkout_with_the_extra():
    hint = install_hint("plot")
    assert hint == f"{sys.executable} -m pip install -e '{ROOT}[plot]'"
    assert "ml-dash[" not in hint


HINT = "from ml_dash.extras import install_hint; print(install_hint({!r}))"


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_installed_elsewhere_the_hint_names_the_extras_packages(tmp_path, extra):
    shutil.copytree(os.path.join(ROOT, "ml_dash"), tmp_path / "ml_dash")  # no pyproject.toml beside it
    out = subprocess.run([sys.executable, "-c", HINT.format(extra)], cwd=tmp_path, text=True,
                         capture_output=True, check=True, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    words = out.stdout.split()
    assert words[:4] == [sys.executable, "-m", "pip", "install"]
    assert [w.strip("'") for w in words[4:]] == list(EXTRAS[extra])


BLOCKED = """
import sys
sys.modules["matplotlib"] = None     # as if it were not installed
sys.modules["pandas"] = None
import ml_dash
for call in (lambda: ml_dash.plot("a/b/c", "train", "loss", "x.png"),
             lambda: ml_dash.runs_table("a/**")):
    try:
        call()
    except ImportError as exc:
        print(exc)
"""


def test_a_missing_extra_raises_with_the_command_that_installs_it(tmp_path):
    out = subprocess.run([sys.executable, "-c", BLOCKED], cwd=tmp_path, text=True,
                         capture_output=True, check=True).stdout.splitlines()
    assert out == [f"this needs matplotlib, from the 'plot' extra: {install_hint('plot')}",
                   f"this needs pandas, from the 'pandas' extra: {install_hint('pandas')}"]


def test_serve_without_the_ui_extra_says_how_to_install_it(tmp_path):
    blocked = ("import sys; sys.modules['uvicorn'] = None\n"
               "from ml_dash.dashboard import serve\n"
               "serve('.dash')")
    done = subprocess.run([sys.executable, "-c", blocked], cwd=tmp_path, text=True, capture_output=True)
    assert done.returncode == 1
    assert done.stderr.startswith(f"the dashboard needs the ui extra: {install_hint('ui')} (")
