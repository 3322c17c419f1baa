"""The base class every plugin derives from.

A plugin is a class with a `name` and a `run(config, context)` method. opflow makes
one instance per task attempt, inside the worker process, so a plugin may keep
state on `self` for the length of one run of one task, never across tasks.
"""
from __future__ import annotations

__all__ = ["Plugin"]

from pathlib import Path
from typing import Any


class Plugin:
    """Subclass this, set `name`, implement `run`.

    `config` is the task's `config` mapping (`{}` when absent). `context` maps the
    id of every transitive upstream task to its result, plus `"params"`. Return
    any picklable value: it becomes this task's result for downstream tasks, and
    its JSON rendering goes into the task's record. Raise to fail the task;
    `opflow.errors.PluginError` marks an expected failure with a clear message.
    """

    name: str = ""
    #: One line shown by `opflow plugins`; defaults to the docstring's first line.
    description: str = ""
    #: The config this plugin takes, as a JSON Schema dict (or None: anything).
    #: `opflow validate` checks each task's config against it (types, required
    #: keys, unknown keys with `additionalProperties: false`); `opflow schema`
    #: gives it to editors. For a plugin in workers/ it must be a literal dict.
    config_schema: dict | None = None
    #: Whether `run` may read the params other than through `${params.X}` in its
    #: config (context["params"], a shell command's $OPFLOW_PARAM_*): then the
    #: params are part of its cache key. Built-ins that never do say False.
    reads_params: bool = True

    #: Set by opflow before `run`: the task's id, its direct upstream task ids,
    #: the workflow file's folder, and the attempt's log (an object with
    #: `write(bytes)`; None outside a run), for output that does not pass through
    #: this process's stdout, as a child's pipes.
    task_id: str = ""
    depends_on: tuple = ()
    workflow_dir: Path = Path(".")
    log_sink: Any = None

    def resolve_path(self, value: str | Path) -> Path:
        """A config path, relative ones taken against the workflow file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.workflow_dir / path

    def run(self, config: dict, context: dict) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"plugin {self.name!r} does not implement run()")

    @classmethod
    def check_task(cls, config: dict, depends_on: tuple, workflow_dir: Path | None = None) -> list:
        """Problems a schema cannot express, found before the run (built-ins only): each a
        message, or (config key path, message) to put it on that key's line."""
        return []

    @classmethod
    def summary(cls) -> str:
        if cls.description:
            return cls.description
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""
