"""Load a workflow file: parse and check it, with the plugins it may name.

What `validate` and `plan` need, and no more: the run's machinery (api.py, the
audit trail, history, the coordinator) is not imported here.
"""
from __future__ import annotations

__all__ = ["load"]

import dataclasses
import functools
from pathlib import Path

from opflow.errors import Problem, WorkflowError
from opflow.plugins import PluginRef, builtin_class, discover_plugins, plugin_config_schema, worker_dirs
from opflow.workflow.spec import Workflow, load_workflow


def load(path: str | Path, params: dict | None = None, *, source: Path | None = None) -> tuple[Workflow, dict[str, PluginRef]]:
    """Parse and check a workflow file; raise `WorkflowError` listing every problem.

    `source`: read the workflow from this file instead, as if it were at `path`
    (resume runs the copy kept in the run directory, from the original's folder).
    """
    path = Path(path)
    directory = path.resolve().parent
    plugins, warnings = discover_plugins(worker_dirs(directory))
    checks: dict = {}

    def plugin_checks(name: str):
        if name not in checks and name in plugins:
            cls = builtin_class(plugins[name])
            check_task = functools.partial(cls.check_task, workflow_dir=directory) if cls is not None else None
            checks[name] = (plugin_config_schema(plugins[name]), check_task)
        return checks.get(name, (None, None))

    hint = " (a plugin file could not be read: see the note)" if warnings else ""
    try:
        workflow = load_workflow(source or path, plugins, param_overrides=params, plugin_hint=hint,
                                 plugin_checks=plugin_checks, directory=directory, env_dir=directory)
    except WorkflowError as error:
        if not warnings or not any("unknown plugin" in p.message for p in error.problems):
            raise
        # Said once, where the file is broken, not once per task that names one of its plugins.
        notes = [Problem(w.path, f"note: {w.message}", w.line) for w in warnings]
        raise WorkflowError(error.problems + notes) from None
    if source is not None:
        workflow = dataclasses.replace(workflow, path=path.resolve())
    return workflow, plugins
