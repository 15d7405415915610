"""The layers of the package, written once and checked on every run.

Each module belongs to one layer and imports only from its own layer or the
ones below it:

    leaves -> storage -> session -> concepts -> experiment/view -> analysis -> CLI

Besides: no import circle anywhere (inside a layer either); outside
``ml_dash/storage/`` nothing imports ``lmdb`` or ``msgpack``, and nothing
imports a storage submodule or a name the facade (``ml_dash.storage.__all__``)
does not list.  Imports inside functions count like the others.  The test
reads the source with ``ast``: nothing is imported to check it.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ml_dash"

# Lowest first.  A module not listed here fails the test: a new module says
# where it belongs (see docs/architecture.md).
LAYERS = {
    "leaves": ["errors", "names", "timestamps", "values", "extras", "arrays", "downsample", "keypaths",
               "config_values", "delayed"],
    "storage": ["storage", "storage.*"],
    "session": ["paths", "templates", "run", "session", "maintenance", "launches",
                "annotations", "run_context"],
    "concepts": ["aggregation", "stream", "metrics", "params", "logs", "file_paths", "file_contents", "files",
                 "tracks", "system_metrics", "console"],
    "experiment/view": ["experiment", "view", "auto_start"],
    "analysis": ["analysis", "analysis.*"],
    "dashboard": ["dashboard", "dashboard.*"],
    # Framework adapters and importers: on Experiment, load() and the listing; the CLI
    # imports the TensorBoard importer.
    "integrations": ["integrations", "integrations.*"],
    "cli": ["cli", "cli_output", "cli_annotate", "cli_import", "cli_sql", "cli_sync", "demo", "__main__",
            ""],  # "": the package's __init__
}
STORAGE_ONLY = ("lmdb", "msgpack")


def _modules():
    """``{dotted name under ml_dash ("" for the package): path}``."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _layer_of(name):
    for rank, (layer, patterns) in enumerate(LAYERS.items()):
        for pattern in patterns:
            if name == pattern or (pattern.endswith(".*") and name.startswith(pattern[:-1])):
                return rank, layer
    return None


def _package_of(name):
    """The package a module's relative imports start from."""
    is_package = MODULES[name].name == "__init__.py"
    return name if is_package else name.rpartition(".")[0]


def _resolve(name, node):
    """``[(imported module under ml_dash or None, names, external top-level module or None)]``."""
    if isinstance(node, ast.Import):
        out = []
        for alias in node.names:
            if alias.name == "ml_dash" or alias.name.startswith("ml_dash."):
                out.append((alias.name[len("ml_dash."):] if "." in alias.name else "", [], None))
            else:
                out.append((None, [], alias.name.split(".")[0]))
        return out
    if node.level == 0:
        module = node.module or ""
        if module != "ml_dash" and not module.startswith("ml_dash."):
            return [(None, [], module.split(".")[0])]
        base = module[len("ml_dash."):] if "." in module else ""
    else:
        base = _package_of(name)
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        if node.module:
            base = f"{base}.{node.module}" if base else node.module
    return [(base, [alias.name for alias in node.names], None)]


def _imports():
    """``{module: [(imported module, names, lineno)]}`` and the external imports."""
    internal, external = {}, {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        internal[name], external[name] = [], []
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for module, names, outside in _resolve(name, node):
                if outside is not None:
                    external[name].append((outside, node.lineno))
                else:
                    internal[name].append((module, names, node.lineno))
    return internal, external


INTERNAL, EXTERNAL = _imports()


def _targets(module, names):
    """The modules an import depends on: ``from pkg import sub`` depends on ``pkg.sub``."""
    subs = [f"{module}.{n}" if module else n for n in names]
    subs = [sub for sub in subs if sub in MODULES]
    return subs if subs and len(subs) == len(names) else [module]


def _storage_exports():
    tree = ast.parse((PACKAGE / "storage" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError("ml_dash/storage/__init__.py has no literal __all__")


def _in_storage(name):
    return name == "storage" or name.startswith("storage.")


def test_every_module_has_a_layer():
    assert [name for name in MODULES if _layer_of(name) is None] == []


def test_imports_go_down_the_layers():
    wrong = []
    for name, imports in INTERNAL.items():
        rank, layer = _layer_of(name)
        for module, names, line in imports:
            for target in _targets(module, names):
                found = _layer_of(target)
                assert found is not None, f"ml_dash/{name}: line {line} imports unknown {target!r}"
                if found[0] > rank:
                    wrong.append(f"{name or 'ml_dash'} ({layer}) line {line} imports "
                                 f"{target or 'ml_dash'} ({found[1]})")
    assert wrong == []


def test_no_import_circle():
    graph = {name: set() for name in MODULES}
    for name, imports in INTERNAL.items():
        for module, names, _ in imports:
            for target in _targets(module, names):
                if target != name and target in graph:
                    graph[name].add(target)
    # Importing a submodule also runs its package's __init__: not an edge of
    # ours to follow, since a package's __init__ imports its submodules.
    state, path, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert circles == []


def test_only_storage_imports_lmdb_and_msgpack():
    wrong = [f"{name} line {line} imports {outside}"
             for name, imports in EXTERNAL.items() if not _in_storage(name)
             for outside, line in imports if outside in STORAGE_ONLY]
    assert wrong == []


def test_the_storage_facade_is_the_only_door():
    exports = _storage_exports()
    wrong = []
    for name, imports in INTERNAL.items():
        if _in_storage(name):
            continue
        for module, names, line in imports:
            if module.startswith("storage."):
                wrong.append(f"{name} line {line} imports the storage submodule {module}")
            elif module == "storage":
                wrong += [f"{name} line {line} imports {n!r}, which ml_dash.storage does not export"
                          for n in names if n not in exports]
    assert wrong == []


def test_storage_imports_nothing_above_the_leaves():
    leaves = {name for name in MODULES if _layer_of(name)[0] == 0}
    wrong = [f"{name} line {line} imports {target}"
             for name, imports in INTERNAL.items() if _in_storage(name)
             for module, names, line in imports for target in _targets(module, names)
             if not _in_storage(target) and target not in leaves]
    assert wrong == []


@pytest.mark.parametrize("source, expected", [
    ("from .storage.keys import X\n", "submodule"),
    ("import lmdb\n", "lmdb"),
])
def test_the_checks_see_a_reach_into_storage(source, expected):
    """The checks above would see such an import (a guard against a vacuous test)."""
    resolved = _resolve("metrics", ast.parse(source).body[0])
    if expected == "lmdb":
        assert resolved == [(None, [], "lmdb")]
    else:
        assert resolved[0][0] == "storage.keys"
    assert "stream" in MODULES and "storage.writer" in MODULES and INTERNAL["metrics"]
