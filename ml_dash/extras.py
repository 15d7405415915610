"""The optional extras: the packages each one installs, and the command that installs it.

This project's distribution is called ``ml-dash`` in ``pyproject.toml``, and on the public
package index that name belongs to another project: ``pip install 'ml-dash[plot]'`` would
install that one.  So every hint about a missing extra comes from :func:`install_hint`, which
names a command that installs *this* package's extra: from the checkout it runs from, or,
when it was installed some other way, the extra's packages by name.

``EXTRAS`` repeats ``[project.optional-dependencies]`` of ``pyproject.toml`` (a test checks
that they agree): an installed package has no ``pyproject.toml`` to read it from, and the
metadata of its distribution would name the other project's extras if that were installed.
"""

import os
import re
import shlex
import sys

EXTRAS = {
    "pandas": ("pandas>=1.5",),
    "arrow": ("pyarrow>=10",),
    "plot": ("matplotlib>=3.5",),
    "image": ("pillow",),
    "torch": ("torch",),
    "ui": ("starlette>=0.37", "uvicorn>=0.29", "pyyaml>=6", "plotly>=5"),
    "video": ("imageio>=2.28", "imageio-ffmpeg>=0.4.9"),
    "system": ("psutil>=5.9", "nvidia-ml-py>=12"),
    "tensorboard": ("tensorboard>=2.10", "google-crc32c>=1.5"),
    "sql": ("duckdb>=1.0", "pyarrow>=10"),
    "lightning": ("lightning>=2.1",),
    "keras": ("keras>=3",),
    "transformers": ("transformers>=4.40", "accelerate>=0.26"),
}

_PROJECT_NAME = re.compile(r'^name\s*=\s*"ml-dash"\s*$', re.M)


def checkout():
    """The source checkout this package runs from (the folder whose ``pyproject.toml``
    names this project, beside the ``ml_dash`` package), or None."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        with open(os.path.join(folder, "pyproject.toml"), encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    return folder if _PROJECT_NAME.search(text) else None


def install_hint(extra):
    """The command that installs ``extra`` into the interpreter running this package,
    e.g. ``/venv/bin/python -m pip install -e '/src/ml-dash[plot]'`` from a checkout, else
    ``/venv/bin/python -m pip install 'matplotlib>=3.5'``.

    (Rejected: a bare ``pip``, which may belong to another environment than the one that
    raised the error.)
    """
    python = shlex.quote(sys.executable or "python")
    where = checkout()
    if where is not None:
        return f"{python} -m pip install -e {shlex.quote(f'{where}[{extra}]')}"
    return f"{python} -m pip install {' '.join(shlex.quote(p) for p in EXTRAS[extra])}"


def missing(module, extra):
    """The message of a missing optional ``module``: what needs it and how to install it."""
    return f"this needs {module.split('.')[0]}, from the '{extra}' extra: {install_hint(extra)}"
