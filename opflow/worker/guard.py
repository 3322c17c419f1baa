"""The `if __name__ == "__main__":` guard, checked before a run starts processes.

Worker processes started with spawn or forkserver (and Dask's LocalCluster
workers) import the script that started the run. A script that calls
`opflow.run()` at its top level, unguarded, would start the run again in every
worker. Two checks, so that the user reads one message, once:

- in the script's own process, before anything starts: is the call reached from
  the top level of `__main__`, at a line outside such a guard? (Read from the
  call stack and the script's source; when in doubt, say nothing.)
- in a worker that is being started, should the first check have missed it: exit
  at once, silently, with `REFUSED_EXIT`, which the backend turns into the same
  message on the tasks it could not run (see backends/process.py, context.py).
"""
from __future__ import annotations

__all__ = ["REFUSED_EXIT", "GUARD_MESSAGE", "unguarded_call_site", "refuse_in_starting_worker"]

import ast
import multiprocessing
import os
import sys

#: Exit status of a process that refused to run the script's top-level opflow.run().
REFUSED_EXIT = 87

GUARD_MESSAGE = ("opflow.run() must be called under `if __name__ == \"__main__\":`: worker processes import "
                 "the script that started the run, and each would start the run again")


def unguarded_call_site() -> str | None:
    """"script.py:LINE" when the caller is reached from an unguarded top-level line of `__main__`."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:  # an interactive session or `python -c`: workers do not import it
        return None
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>" and frame.f_globals is vars(main)):
        frame = frame.f_back
    if frame is None:  # the script's top level has finished (a callback, a thread): no re-entry to fear
        return None
    try:
        with open(frame.f_code.co_filename, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, ValueError):
        return None
    line = frame.f_lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _names_main(node.test) and node.lineno <= line <= (node.end_lineno or 0):
            return None
    try:
        shown = os.path.relpath(frame.f_code.co_filename)
    except ValueError:  # another drive (Windows)
        shown = frame.f_code.co_filename
    return f"{shown}:{line}"


def _names_main(test: ast.expr) -> bool:
    """Whether an `if` test compares `__name__` with "__main__" (either way round, in any and/or)."""
    names = {n.id for n in ast.walk(test) if isinstance(n, ast.Name)}
    strings = {n.value for n in ast.walk(test) if isinstance(n, ast.Constant)}
    return "__name__" in names and "__main__" in strings


def refuse_in_starting_worker() -> None:
    """In a worker process that is importing the script (the stdlib's own test): exit
    quietly with REFUSED_EXIT; the process that started it reports why, once."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        try:
            sys.stderr.flush()
        finally:
            os._exit(REFUSED_EXIT)
