"""`python`: call a function given as "module:attr"."""
from __future__ import annotations

__all__ = ["PythonPlugin", "local_module_file"]

import importlib
import inspect
import weakref
from pathlib import Path

from opflow.errors import ConfigError
from opflow.plugin_base import Plugin
from opflow.plugins._files import import_file, module_name_for


# (workflow folder, module name) -> module: the lookup costs file-system calls,
# and one worker runs many tasks of one workflow.
_resolved: dict = {}


class PythonPlugin(Plugin):
    """Call a Python function ("module:attr"); its return value is the result."""

    name = "python"
    config_schema = {
        "type": "object",
        "properties": {
            "function": {"type": "string", "minLength": 1, "description": '"module:attr"'},
            "args": {"type": "array", "description": "Positional arguments."},
            "kwargs": {"type": "object", "description": "Keyword arguments."},
        },
        "required": ["function"],
        "additionalProperties": False,
    }

    def run(self, config: dict, context: dict):
        spec = config.get("function")
        if not isinstance(spec, str) or ":" not in spec:
            raise ConfigError("config 'function' is required, as \"module:attr\" (e.g. \"mytools:clean\")")
        module_name, _, attr = spec.partition(":")
        args = config.get("args") or []
        kwargs = dict(config.get("kwargs") or {})
        if not isinstance(args, list):
            raise ConfigError("config 'args' must be a list")
        module = self._import(module_name)
        func = module
        try:
            for part in attr.split("."):
                func = getattr(func, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
        if not callable(func):
            raise ConfigError(f"{spec} is not callable")
        if _accepts_context(func):
            kwargs["context"] = context
        return func(*args, **kwargs)

    def _import(self, module_name: str):
        """A .py beside the workflow file wins over an installed module of that name."""
        cached = _resolved.get((self.workflow_dir, module_name))
        if cached is not None:
            return cached
        local = local_module_file(self.workflow_dir, module_name)
        if local.is_file():
            module = import_file(local, module_name_for(local))
            _resolved[(self.workflow_dir, module_name)] = module
            return module
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise ConfigError(
                    f"cannot import module {module_name!r}: not installed, and no {local.name} beside the workflow"
                ) from None
            raise


def local_module_file(workflow_dir, module_name: str) -> Path:
    """Where a python task's module is looked for first: a .py beside the workflow file
    (`pkg.mod`: pkg/mod.py). The one rule, for the import and for the cache key (dispatch/cache.py)."""
    return Path(workflow_dir) / (module_name.replace(".", "/") + ".py")


def _accepts_context(func) -> bool:
    # inspect.signature costs ~40 µs; a worker calls the same few functions many times.
    try:
        return _takes_context[func]
    except (KeyError, TypeError):  # not seen yet, or not hashable
        pass
    try:
        answer = "context" in inspect.signature(func).parameters
    except (TypeError, ValueError):  # builtins without a signature
        answer = False
    try:
        _takes_context[func] = answer
    except TypeError:
        pass
    return answer


_takes_context: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
