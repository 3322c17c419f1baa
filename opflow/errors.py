"""The error tree. Each class knows the exit code the CLI turns it into.

Three mechanisms, never mixed (see STYLE.md): bad input raises a `WorkflowError`
(exit 2, one line per problem, no traceback); a failing task is a recorded value,
never an exception that unwinds the run; a bug in opflow is a traceback.
"""
from __future__ import annotations

__all__ = [
    "OpflowError",
    "UsageError",
    "WorkflowError",
    "Problem",
    "PluginError",
    "LockedError",
    "RunSkipped",
]

from dataclasses import dataclass


class OpflowError(Exception):
    """Base of every error opflow raises on purpose."""

    exit_code = 1


class UsageError(OpflowError):
    """A bad command line or option value."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow file, located as precisely as we can."""

    path: str
    message: str
    line: int | None = None  # 1-based
    task_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        who = f" task '{self.task_id}':" if self.task_id else ""
        return f"{where}:{who} {self.message}"


class WorkflowError(OpflowError):
    """An invalid workflow file; carries every problem found, not only the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PluginError(Exception):
    """Raised by a plugin for a clear, expected failure (bad config, bad input).

    The task's record shows the message without blaming opflow; no traceback is
    needed to understand it, though one is still recorded.
    """


class ConfigError(PluginError):
    """A task set up wrong: its config, or its plugin, module or function, cannot be used.

    No attempt can go otherwise, so it is never retried (a plugin's other failures are:
    a command's non-zero exit, a flaky service). Its record says `"misconfigured": true`
    beside the error's type, which stays `PluginError`.
    """


class LockedError(OpflowError):
    """Another run of the same workflow holds the lock."""

    exit_code = 3


class RunSkipped(OpflowError):
    """`--if-running skip`: another run of the workflow holds the lock, so this one never started."""

    exit_code = 0
