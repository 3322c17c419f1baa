"""Importing a user's .py file (a plugin in workers/, a python task's module) by path.

Such a module gets a name derived from its path (`_opflow_file_<stem>_<hash>`),
the same in every process. A result whose class is defined there pickles by that
name, so a task reading it on another worker must be able to import it by name
alone: a finder on `sys.meta_path` resolves these names by searching the
folders of the workflows this process runs tasks for (`add_search_root`).
"""
from __future__ import annotations

__all__ = ["import_file", "module_name_for", "add_search_root", "written_module_name", "add_copy"]

import hashlib
import importlib.abc
import importlib.util
import os
import re
import sys
import threading
from pathlib import Path

# Thread-backend tasks may import the same file at once; without the lock one of
# them could find the other's module in sys.modules before it finished executing.
_lock = threading.RLock()

_PREFIX = "_opflow_file_"
_HASH_LEN = 12
_known: dict[str, Path] = {}  # module name -> the file, for names this process made
_roots: list[str] = []  # folders searched for a name this process has not seen
_SEARCH_DEPTH = 4  # folders below a root searched for a module's file (dotted module names)
_copies: dict[str, str] = {}  # a folder holding a shipped copy -> the folder it copies (add_copy)


def module_name_for(path: Path) -> str:
    """The import name of a user's file: the same in every process that sees the same path
    (a shipped copy is named after the file it copies: add_copy)."""
    resolved = Path(os.path.abspath(path))
    name = f"{_PREFIX}{re.sub(r'[^0-9A-Za-z_]', '_', resolved.stem)}_{_digest(_original(resolved))}"
    _known[name] = resolved
    return name


def written_module_name(name: str) -> str:
    """A module's name as the workflow wrote it: a user's file (`_opflow_file_steps_<hash>`) by its stem."""
    if not name.startswith(_PREFIX):
        return name
    path = _known.get(name)
    return path.stem if path is not None else name[len(_PREFIX):-_HASH_LEN - 1]


def add_copy(copy: str, original: str) -> None:
    """Folder `copy` holds this machine's copy of `original`'s files (shipped to a Dask worker
    that cannot see them): its modules take the original's names, so a result pickled where
    the original is unpickles here, and the other way round."""
    copy, original = os.path.abspath(copy), os.path.abspath(original)
    with _lock:
        if _copies.get(copy) == original:
            return
        for older in [c for c, o in _copies.items() if o == original]:
            _forget_copy(older)  # the files changed since: import the new ones, not the cached old modules
        _copies[copy] = original


def _forget_copy(copy: str) -> None:
    del _copies[copy]
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(copy + os.sep):
            del sys.modules[name]
    for name in [n for n, path in _known.items() if str(path).startswith(copy + os.sep)]:
        del _known[name]
    if copy in sys.path:
        sys.path.remove(copy)


def _original(path: Path) -> Path:
    for copy, original in _copies.items():
        if str(path).startswith(copy + os.sep):
            return Path(original + str(path)[len(copy):])
    return path


def _digest(path: Path) -> str:
    return hashlib.sha1(str(path).encode()).hexdigest()[:_HASH_LEN]


def add_search_root(folder: str) -> None:
    """A folder whose .py files may define classes of results this process unpickles."""
    if folder not in _roots:
        _roots.append(folder)
        if _FINDER not in sys.meta_path:
            sys.meta_path.append(_FINDER)


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


def _locate(name: str) -> Path | None:
    """The file behind a module name made by `module_name_for`, in any process."""
    known = _known.get(name)
    if known is not None:
        return known
    stem_and_hash = name[len(_PREFIX):]
    stem, digest = stem_and_hash[:-_HASH_LEN - 1], stem_and_hash[-_HASH_LEN:]
    for root in list(_roots):
        for folder, dirs, files in os.walk(root, followlinks=True):
            if folder[len(root):].count(os.sep) >= _SEARCH_DEPTH:
                dirs[:] = []
            for file_name in files:
                if file_name.endswith(".py") and re.sub(r"[^0-9A-Za-z_]", "_", file_name[:-3]) == stem:
                    candidate = Path(os.path.abspath(os.path.join(folder, file_name)))
                    if _digest(_original(candidate)) == digest:
                        _known[name] = candidate
                        return candidate
    return None


class _UserFileFinder(importlib.abc.MetaPathFinder):
    """Imports `_opflow_file_*` modules by name (unpickling a result made in another process)."""

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(_PREFIX):
            return None
        file = _locate(fullname)
        if file is None:
            return None
        folder = os.fspath(file.parent)
        if folder not in sys.path:
            sys.path.append(folder)
        return importlib.util.spec_from_file_location(fullname, file)


_FINDER = _UserFileFinder()
