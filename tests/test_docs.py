"""The docs cannot drift: every ```python block of README.md and docs/*.md runs,
and docs/cli.md equals what the command line's --help says.

The blocks of one page run in order, in one namespace, in a fresh empty
directory.  A block is skipped only when the line before its fence is
``<!-- no-run: reason -->`` with a reason, or ``<!-- needs: module, ... -->``
and one of those optional frameworks is not installed (a failure instead
under ``ML_DASH_REQUIRE_EXTRAS=1``, where CI installs them all).
"""

import glob
import importlib.util
import os
import re
import runpy

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SKIP = re.compile(r"<!--\s*no-run:(.*?)-->\s*$")
NEEDS = re.compile(r"<!--\s*needs:(.*?)-->\s*$")
# The frameworks of docs/integrations.md: a page whose example needs one that is not installed
# is skipped, naming it (and fails under ML_DASH_REQUIRE_EXTRAS=1, see conftest.py).
OPTIONAL_FRAMEWORKS = {"torch", "transformers", "accelerate"}


def python_blocks(path):
    """``(line number, code, skip reason or None)`` of each python block; the reason
    names the missing modules of a block that needs what is not installed."""
    with open(path) as f:
        text = f.read()
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        line = text.count("\n", 0, match.start()) + 1
        needs = NEEDS.search(before)
        missing = [name.strip() for name in needs.group(1).split(",")
                   if importlib.util.find_spec(name.strip()) is None] if needs else []
        if missing and os.environ.get("ML_DASH_REQUIRE_EXTRAS") == "1":
            raise AssertionError(f"{path}:{line} needs {missing}, not installed")
        if missing:
            yield line, match.group(1), f"needs {', '.join(missing)}"
            continue
        yield line, match.group(1), skip and skip.group(1).strip()


def test_every_page_has_something_to_check():
    assert len(PAGES) >= 6
    assert sum(1 for page in PAGES for _ in python_blocks(page)) >= 15


@pytest.mark.parametrize("page", PAGES, ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for line, code, skip in python_blocks(page):
        if skip is not None:
            assert skip, f"{page}:{line}: a no-run marker needs a reason"
            continue
        try:
            exec(compile(code, f"{page}:{line}", "exec"), namespace)
        except Exception as exc:
            missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
            if missing and missing.split(".")[0] in OPTIONAL_FRAMEWORKS:
                pytest.skip(f"could not import {missing!r}, which the block at line {line} needs")
            pytest.fail(f"{os.path.relpath(page, ROOT)}, block at line {line}: "
                        f"{type(exc).__name__}: {exc}")


def test_cli_reference_is_current():
    generator = runpy.run_path(os.path.join(ROOT, "docs", "make_cli_md.py"))
    with open(generator["PATH"]) as f:
        assert f.read() == generator["render"](), \
            "docs/cli.md is out of date: run python docs/make_cli_md.py"


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_relative_links_lead_to_files(page):
    with open(page) as f:
        targets = LINK.findall(f.read())
    missing = [t for t in targets if "://" not in t
               and not os.path.exists(os.path.join(os.path.dirname(page), t))]
    assert not missing, f"{os.path.relpath(page, ROOT)} links to missing files: {missing}"
