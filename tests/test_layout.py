"""The house: each folder imports only the folders below it, no module circle, no private reach.

The order is the order of a run's data, from the terminal down to the words every layer shares:

    __main__ > the package face > cli/ > api > dispatch/ > backends/ > worker/ > rundir/
             > workflow/ > plugins/ > the shared words (errors, events, attempt, procs, words, ...)

Every import counts: at module level, inside a function (lazy) and for type checkers only.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers import REPO

OPFLOW = REPO / "opflow"

#: Higher imports lower; a folder never imports one above it. Files directly in opflow/ that
#: are not named here are the shared words, at the bottom.
FLOORS = ["__main__", "face", "cli", "api", "dispatch", "backends", "worker", "rundir", "workflow",
          "plugins", "words"]
FOLDERS = {"cli", "dispatch", "backends", "worker", "rundir", "workflow", "plugins"}
#: Package faces that hold nothing: importing one of their modules must not load the others.
EMPTY_FACES = ("cli", "dispatch", "worker", "rundir", "workflow")


def _modules() -> dict[str, Path]:
    out = {}
    for path in OPFLOW.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for each opflow import in `path`, of every kind."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                module = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            if module == "opflow" or module.startswith("opflow."):
                found.append((module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "opflow"]
    return found


def _edges() -> dict[str, dict[str, int]]:
    """module -> {module it imports: line}; `from package import submodule` is an edge to the submodule."""
    graph: dict[str, dict[str, int]] = {name: {} for name in MODULES}
    for name, path in MODULES.items():
        for module, names, line in _imports(name, path):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES] or [module]
            for target in targets:
                if target in MODULES and target != name:
                    graph[name].setdefault(target, line)
    return graph


def _floor(module: str) -> str:
    parts = module.split(".")
    if module == "opflow":
        return "face"
    if parts[1] in FOLDERS or parts[1] in ("__main__", "api"):
        return parts[1]
    return "words"


def test_every_folder_imports_only_folders_below_it():
    upward = []
    for name, targets in _edges().items():
        for target, line in targets.items():
            if FLOORS.index(_floor(name)) > FLOORS.index(_floor(target)):
                upward.append(f"{name}:{line} imports {target} ({_floor(name)} is below {_floor(target)})")
    assert upward == []


def test_no_circle_among_modules_counting_lazy_and_typing_imports():
    graph = _edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                circles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert circles == []


def test_the_layering_checks_see_an_upward_import(tmp_path, monkeypatch):
    # The checks above read the source; prove they would catch a lazy upward import.
    fake = dict(MODULES)
    bad = tmp_path / "opflow" / "workflow" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from opflow.dispatch.coordinator import Coordinator\n")
    fake["opflow.workflow.bad"] = bad
    monkeypatch.setattr(sys.modules[__name__], "MODULES", fake)
    edges = _edges()
    assert edges["opflow.workflow.bad"] == {"opflow.dispatch.coordinator": 2}
    assert FLOORS.index(_floor("opflow.workflow.bad")) > FLOORS.index(_floor("opflow.dispatch.coordinator"))


def test_no_module_imports_another_modules_private_name():
    offences = []
    for name, path in MODULES.items():
        for module, names, line in _imports(name, path):
            for imported in names:
                if imported.startswith("_") and not imported.startswith("__") and f"{module}.{imported}" not in MODULES:
                    offences.append(f"{name}:{line} imports {imported} from {module}")
    assert offences == []


def test_the_quiet_package_faces_hold_no_code():
    for folder in EMPTY_FACES:
        tree = ast.parse((OPFLOW / folder / "__init__.py").read_text())
        assert [type(node).__name__ for node in tree.body] == ["Expr"], f"opflow/{folder}/__init__.py holds code"


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(sorted(m for m in sys.modules if m.startswith('opflow')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(eval(out))  # a printed list of module names


def test_the_coordinator_loads_no_backend_and_nothing_that_runs_in_a_worker():
    loaded = _loaded_after("import opflow.dispatch.coordinator")
    for module in ("opflow.worker.execute", "opflow.worker.context", "opflow.worker.monitor", "opflow.worker.output",
                   "opflow.backends.process", "opflow.backends.local", "opflow.backends.dask", "opflow.plugins"):
        assert module not in loaded, f"importing the coordinator loads {module}"


def test_validating_loads_none_of_the_run_machinery():
    loaded = _loaded_after("from opflow.workflow.loading import load")
    assert not {m for m in loaded if m.split(".")[1:2] in (["dispatch"], ["backends"], ["worker"], ["rundir"], ["api"])}


def test_the_public_names_keep_working():
    code = ("import opflow; from opflow import Plugin, run, run_async, resume, load, RunResult, __version__; "
            "from opflow.plugin_base import Plugin as P; assert P is Plugin; print(__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == __import__("opflow").__version__
