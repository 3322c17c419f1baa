"""Plugin registry: the built-ins in `PLUGINS`, plus discovery.

Three sources, later ones winning on a name clash (the most local is the most
deliberate): the built-ins, the `opflow.plugins` entry-point group, and `*.py`
files in the `workers/` folder beside the workflow file. Discovery never imports user files: it reads them
with `ast`, so `validate` and `plan` run no user code and stay fast. The worker
process imports the four built-ins with this module, and of the user's plugins exactly
the one a task names (see `load_plugin_class`).
"""
from __future__ import annotations

__all__ = ["PLUGINS", "PluginRef", "add_copy", "add_search_root", "describe_class", "discover_plugins", "load_plugin_class",
           "worker_dirs", "plugin_config_schema", "builtin_class", "plugin_source_digest", "plugin_reads_params",
           "PluginFileWarning", "written_module_name"]

import ast
import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

from opflow.plugin_base import Plugin
from opflow.plugins._files import add_copy, add_search_root, import_file, module_name_for, written_module_name
from opflow.plugins.csv_ingest import CsvIngestPlugin
from opflow.plugins.metrics import MetricsPlugin
from opflow.plugins.python_call import PythonPlugin
from opflow.plugins.shell import ShellPlugin

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
    import importlib.metadata  # here: the pool's workers import this package, and never discover

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
                warnings.append(PluginFileWarning(path, line, f"cannot read plugin file: {exc}"))
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


class PluginFileWarning(str):
    """'path:line: what' about a workers/ file that could not be read, with its parts."""

    def __new__(cls, path: Path, line: int | None, message: str):
        self = super().__new__(cls, f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path, self.line, self.message = str(path), line, message
        return self


def _scan_plugin_file(path: Path) -> list[tuple[str, str, str]]:
    """(plugin name, class name, description) for each plugin class in a file, by `ast`."""
    return [(c["name"], c["class"], c["description"]) for c in _scan_classes(path)]


def _scan_classes(path: Path) -> list[dict]:
    """Each plugin class in a file, read by `ast` (no user code runs).

    A plugin class sets `name = "..."` in its own body and derives from a base
    called `Plugin`, defines `run`, or derives from a class of the same file that
    does (a base class shared by several plugins). `config_schema`, when a
    literal dict, is read too, and inherited from such a base.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    classes: dict[str, dict] = {}
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        attrs: dict[str, str] = {}
        schema = None
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
            target = item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1 else getattr(item, "target", None)
            if isinstance(target, ast.Name) and target.id == "config_schema" and getattr(item, "value", None) is not None:
                try:
                    schema = ast.literal_eval(item.value)
                except ValueError:
                    schema = None  # not a literal: cannot be known without running the file
        base_names = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
        local_bases = [classes[b] for b in base_names if b in classes]
        is_plugin = has_run or "Plugin" in base_names or any(b["is_plugin"] for b in local_bases)
        if schema is None:
            schema = next((b["schema"] for b in local_bases if b["schema"] is not None), None)
        doc = (ast.get_docstring(node) or "").strip()
        info = {"name": attrs.get("name"), "class": node.name, "is_plugin": is_plugin, "schema": schema,
                "description": attrs.get("description") or (doc.splitlines()[0] if doc else "")}
        classes[node.name] = info
        if info["name"] and is_plugin:
            found.append(info)
    return found


def builtin_class(ref: PluginRef) -> type | None:
    """The class of a built-in plugin (already imported), else None: user code is not imported to check."""
    return PLUGINS.get(ref.name) if ref.source == "builtin" else None


def plugin_config_schema(ref: PluginRef) -> dict | None:
    """The plugin's `config_schema`, without running user code for a workers/ file."""
    if ref.source == "builtin":
        return PLUGINS[ref.name].config_schema
    if ref.source == "file":
        path, _, class_name = ref.target.rpartition(":")
        try:
            classes = _scan_classes(Path(path))
        except (OSError, SyntaxError, ValueError):
            return None
        return next((c["schema"] for c in classes if c["class"] == class_name), None)
    try:  # an entry point: an installed package, imported like any library
        schema = getattr(load_plugin_class(ref), "config_schema", None)
    except Exception:  # a broken third-party plugin fails its task at run time, with the reason
        return None
    return schema if isinstance(schema, dict) else None


def plugin_reads_params(ref: PluginRef) -> bool:
    """Whether the params belong in the plugin's cache key (see Plugin.reads_params)."""
    cls = builtin_class(ref)
    return True if cls is None else bool(cls.reads_params)


def plugin_source_digest(ref: PluginRef) -> str:
    """What identifies the plugin's code, for cache keys: a workers/ file's content
    hash, else the target and opflow's version (an installed package's code changes with its version)."""
    if ref.source == "file":
        try:
            return hashlib.sha256(Path(ref.target.rpartition(":")[0]).read_bytes()).hexdigest()
        except OSError:
            return "unreadable"
    from opflow._version import __version__

    version = ""
    if ref.source == "entry point":
        import importlib.metadata

        try:
            version = importlib.metadata.version(ref.target.split(".")[0].split(":")[0])
        except Exception:  # not a distribution name: the target alone then
            version = ""
    return f"{ref.target}@{__version__}/{version}"


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
