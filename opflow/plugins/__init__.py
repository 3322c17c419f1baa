"""Plugin registry: the built-ins in `PLUGINS`, plus discovery.

Three sources, later ones winning on a name clash (the most local is the most
deliberate): the built-ins, the `opflow.plugins` entry-point group, and `*.py`
files in the `workers/` folder beside the workflow file. Discovery never imports user files: it reads them
with `ast`, so `validate` and `plan` run no user code and stay fast. The worker
process imports exactly the one plugin a task names (see `load_plugin_class`).
"""
from __future__ import annotations

__all__ = ["PLUGINS", "PluginRef", "add_search_root", "describe_class", "discover_plugins", "load_plugin_class",
           "worker_dirs"]

import ast
import importlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from ..plugin_base import Plugin
from ._files import add_search_root, import_file, module_name_for
from .csv_ingest import CsvIngestPlugin
from .metrics import MetricsPlugin
from .python_call import PythonPlugin
from .shell import ShellPlugin

ENTRY_POINT_GROUP = "opflow.plugins"

#: The built-in plugins, name -> class.
PLUGINS: dict[str, type[Plugin]] = {
    cls.name: cls for cls in (ShellPlugin, PythonPlugin, CsvIngestPlugin, MetricsPlugin)
}


@dataclass(frozen=True)
class PluginRef:
    """Where a plugin lives, small and picklable: what a worker needs to load it."""

    name: str
    source: str  # "builtin" | "entry point" | "file"
    target: str  # "module:attr", or "/abs/path.py:ClassName" for a file
    description: str = ""


def worker_dirs(workflow_dir: Path | None) -> list[Path]:
    """The `workers/` folder searched: beside the workflow file, or the current folder's."""
    base = workflow_dir if workflow_dir is not None else Path.cwd()
    candidate = (base / "workers").resolve()
    return [candidate] if candidate.is_dir() else []


def discover_plugins(dirs: list[Path] = (), *, describe: bool = False) -> tuple[dict[str, PluginRef], list[str]]:
    """Every plugin name available, and warnings about files that could not be read.

    With `describe`, entry points are loaded to read their descriptions (the
    `plugins` command); otherwise only their names and targets are looked at.
    """
    refs: dict[str, PluginRef] = {}
    warnings: list[str] = []
    for name, cls in PLUGINS.items():
        refs[name] = PluginRef(name, "builtin", f"{cls.__module__}:{cls.__qualname__}", cls.summary())
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        description = ""
        if describe:
            try:
                description = describe_class(ep.load())
            except Exception as exc:  # a broken third-party plugin must not hide the others
                description = f"(cannot load: {type(exc).__name__}: {exc})"
        refs[ep.name] = PluginRef(ep.name, "entry point", ep.value, description)
    # The folder listed first (beside the workflow) wins, so scan it last.
    for folder in reversed(list(dirs)):
        for path in sorted(Path(folder).glob("*.py")):
            if path.name.startswith("_"):
                continue
            try:
                found = _scan_plugin_file(path)
            except (OSError, SyntaxError, ValueError) as exc:
                line = getattr(exc, "lineno", None)
                where = f"{path}:{line}" if line else str(path)
                warnings.append(f"{where}: cannot read plugin file: {exc}")
                continue
            for name, class_name, description in found:
                refs[name] = PluginRef(name, "file", f"{path}:{class_name}", description)
    return refs, warnings


def describe_class(cls) -> str:
    """The one line `opflow plugins` shows for a plugin class.

    Any class with a `name` and a `run` is a plugin (the worker needs no more),
    whether or not it derives from `Plugin`: its `description`, else its
    docstring's first line.
    """
    if not callable(getattr(cls, "run", None)) or not getattr(cls, "name", None):
        return f"(not a plugin: {getattr(cls, '__qualname__', cls)!s} needs a 'name' and a 'run' method)"
    description = getattr(cls, "description", "")
    if isinstance(description, str) and description.strip():
        return description.strip().splitlines()[0]
    doc = (getattr(cls, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _scan_plugin_file(path: Path) -> list[tuple[str, str, str]]:
    """(plugin name, class name, description) for each plugin class in a file, by `ast`.

    A plugin class sets `name = "..."` in its body and either derives from a base
    called `Plugin` or defines `run`.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        attrs: dict[str, str] = {}
        has_run = False
        for item in node.body:
            if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant) and isinstance(item.value.value, str):
                for target in item.targets:
                    if isinstance(target, ast.Name):
                        attrs[target.id] = item.value.value
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and isinstance(item.value, ast.Constant):
                if isinstance(item.value.value, str):
                    attrs[item.target.id] = item.value.value
            elif isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "run":
                has_run = True
        base_names = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
        if attrs.get("name") and (has_run or "Plugin" in base_names):
            doc = (ast.get_docstring(node) or "").strip()
            description = attrs.get("description") or (doc.splitlines()[0] if doc else "")
            found.append((attrs["name"], node.name, description))
    return found


def load_plugin_class(ref: PluginRef) -> type:
    """Import the class a `PluginRef` points at (in the process that runs the task)."""
    location, _, attr = ref.target.rpartition(":")
    if ref.source == "file":
        path = Path(location)
        module = import_file(path, module_name_for(path))
    else:
        module = importlib.import_module(location)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
