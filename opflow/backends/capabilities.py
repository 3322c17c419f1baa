"""Settings the chosen backend cannot honour, said at the start (what it can do: base.py).

A `timeout` on the inline backend, or a `max_memory` on the thread backend, used to
be ignored without a word. `unenforced_settings` lists, once per run, each setting
the chosen backend will not enforce (the CLI prints them; run.json records them),
and `concurrency` is how many tasks really run at once.
"""
from __future__ import annotations

__all__ = ["concurrency", "unenforced_settings"]

from opflow.backends import BACKENDS
from opflow.workflow.spec import Workflow

_SHOWN = 5  # task ids named in a warning before "and N more"


def concurrency(executor: str, workers: int) -> int:
    """How many tasks run at once: the pool size, but 1 on a backend that is not parallel (inline)."""
    caps = BACKENDS.get(executor)
    return workers if caps is None or caps.parallel else 1


def unenforced_settings(workflow: Workflow, executor: str, workers: int = 0) -> list[str]:
    """One line per setting the backend will not enforce, naming the tasks that set it."""
    caps = BACKENDS.get(executor)
    if caps is None:
        return []
    warnings = []
    if not caps.parallel and workers > 1:
        warnings.append(f"--workers {workers} is not used: the {executor} backend runs one task at a time")
    timed = [t.id for t in workflow.tasks if t.timeout is not None]
    if timed and caps.timeout == "never":
        warnings.append(f"timeout is not enforced on the {executor} backend ({caps.why_no_timeout}); "
                        f"set on {_names(timed)}")
    elif timed and caps.timeout == "abandons":
        warnings.append(f"timeout cannot stop a task on the {executor} backend ({caps.why_no_timeout}); "
                        f"set on {_names(timed)}")
    capped = [t.id for t in workflow.tasks if t.max_memory is not None]
    if capped and not caps.max_memory:
        warnings.append(f"max_memory is not enforced on the {executor} backend ({caps.why_no_max_memory}); "
                        f"set on {_names(capped)}")
    sized = [t.id for t in workflow.tasks if isinstance(t.memory, int)]
    if sized and not caps.max_memory:  # the reservation still holds (admission.py); the kill does not
        warnings.append(f"memory: SIZE is reserved but not enforced on the {executor} backend "
                        f"({caps.why_no_max_memory}); set on {_names(sized)}")
    return warnings


def _names(task_ids: list[str]) -> str:
    shown = ", ".join(f"'{t}'" for t in task_ids[:_SHOWN])
    more = len(task_ids) - _SHOWN
    return f"task {shown}" if len(task_ids) == 1 else f"tasks {shown}" + (f" and {more} more" if more > 0 else "")
