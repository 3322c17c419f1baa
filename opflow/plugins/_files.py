"""Importing a user's .py file (a plugin in workers/, a python task's module) by path."""
from __future__ import annotations

__all__ = ["import_file"]

import importlib.util
import os
import sys
import threading
from pathlib import Path

# Thread-backend tasks may import the same file at once; without the lock one of
# them could find the other's module in sys.modules before it finished executing.
_lock = threading.Lock()


def import_file(path: Path, module_name: str):
    """The module in `path`, imported once per process under `module_name`."""
    with _lock:
        module = sys.modules.get(module_name)
        if module is not None:
            return module
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        # Let the file import its neighbours (helpers kept beside it).
        folder = os.fspath(path.parent)
        if folder not in sys.path:
            sys.path.append(folder)
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        return module
