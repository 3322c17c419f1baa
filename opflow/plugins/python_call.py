"""`python`: call a function given as "module:attr"."""
from __future__ import annotations

__all__ = ["PythonPlugin", "local_module_file", "function_problem", "missing_module"]

import importlib
import importlib.util
import inspect
import sys
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

    @classmethod
    def check_task(cls, config: dict, depends_on: tuple, workflow_dir=None) -> list:
        """`function` names a module:attr, and the module is there (without importing it)."""
        spec = config.get("function")
        if not isinstance(spec, str) or not spec:
            return []  # the schema says it
        problem = function_problem(spec)
        if problem is None and workflow_dir is not None:
            problem = missing_module(workflow_dir, spec.partition(":")[0])
        return [(("function",), problem)] if problem else []

    def run(self, config: dict, context: dict):
        spec = config.get("function")
        if not isinstance(spec, str) or not spec:
            raise ConfigError("config 'function' is required, as \"module:attr\" (e.g. \"mytools:clean\")")
        problem = function_problem(spec)
        if problem is not None:
            raise ConfigError(problem)
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
        try:
            if local.is_file():
                module = import_file(local, module_name_for(local))
                _resolved[(self.workflow_dir, module_name)] = module
                return module
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise ConfigError(
                    f"cannot import module {module_name!r}: not installed, and no {local.name} beside the workflow"
                ) from None
            raise ConfigError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from exc
        except (SyntaxError, ImportError) as exc:
            # The module cannot be loaded as it is written (or what it imports is missing): no retry heals that.
            raise ConfigError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from exc


def function_problem(spec: str) -> str | None:
    """What is wrong with a `function:` string's shape, or None."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name.strip() or not attr.strip():
        return f"config 'function' must be module:attr, got {spec!r}"
    return None


_found: set = set()  # (workflow folder, module name) found (only these: a module may be written later)


def missing_module(workflow_dir, module_name: str) -> str | None:
    """Why a python task's module cannot be found, or None: neither a .py beside the workflow
    nor an installed module. Nothing is imported (`find_spec` of the top-level name: a
    package's submodule would mean importing the package)."""
    if (workflow_dir, module_name) in _found:
        return None
    top = module_name.split(".")[0]
    if local_module_file(workflow_dir, module_name).is_file():
        found = True
    else:
        try:
            found = top in sys.modules or importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):  # a name that cannot be a module's
            found = False
    if found:
        if len(_found) < 10_000:  # 100,000 tasks calling one module: looked for once
            _found.add((workflow_dir, module_name))
        return None
    return f"config 'function': module {module_name!r} is not installed, and there is no {module_name.replace('.', '/')}.py beside the workflow"


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
