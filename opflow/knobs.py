"""The environment variables opflow reads: one list, read one way, a bad value an error.

Each `Knob` names its variable, the kind of value it takes, what it defaults to, and
whether it is for users or only for opflow's own tests. `read(name)` is the only way
opflow reads one: it returns the value parsed (None when the variable is unset or
empty) and raises `KnobError` (a `UsageError`: exit 2, one line naming the variable
and the value) for a bad one. `check()` reads them all, so that a run refuses a bad
value before anything starts, however deep the code that would read it.

docs/environment.md is this list as a table (`markdown_table`; tests/test_knobs.py
keeps the two the same). The variables opflow *sets* for a task (a shell
task's OPFLOW_PARAM_<KEY>) are not knobs: opflow never reads them.
"""
from __future__ import annotations

__all__ = ["Knob", "KnobError", "KNOBS", "USER", "TEST", "CLI", "RUN", "read", "check", "markdown_table"]

import math
import os
from typing import Callable

from opflow.errors import UsageError

USER = "user"
TEST = "test"
CLI = "the command line"
RUN = "every run"


class KnobError(UsageError):
    """An environment variable opflow reads holds a value it cannot use."""


class Knob:
    """One environment variable opflow reads (a plain class: this module is read at start-up)."""

    __slots__ = ("name", "kind", "default", "audience", "scope", "means", "parse")

    def __init__(self, name: str, kind: str, default: str, audience: str, scope: str, means: str,
                 parse: Callable[[str], object]):
        self.name = name
        #: The kind of value, as the table shows it ("a number of seconds >= 0", "a path", ...).
        self.kind = kind
        #: What applies when the variable is unset or empty, in words (the code that uses
        #: the value owns the default itself: a CPU count, a platform's choice).
        self.default = default
        self.audience = audience  # USER or TEST
        #: Who reads it: CLI (the command line: defaults for its options) or RUN (every
        #: run, from the command line or `opflow.run`).
        self.scope = scope
        self.means = means
        #: text -> value; raises ValueError for a bad one.
        self.parse = parse

    def __repr__(self) -> str:
        return f"Knob({self.name!r})"


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise ValueError(text)
    return value


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(text)
        return value

    return parse


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(text)
        return text

    return parse


def _text(text: str) -> str:
    return text


_KNOBS = [
    Knob("OPFLOW_WORKERS", "a whole number >= 0", "the CPUs this process may use", USER, CLI,
         "`opflow run` / `resume`: the default for `--workers` (0: the CPUs this process may use).", _at_least(0)),
    Knob("OPFLOW_EXECUTOR", "a backend's name, as `--executor` takes", "process", USER, CLI,
         # Which names are backends is the backends' to say (above this module): the CLI checks it.
         "`opflow run` / `resume`: the default for `--executor`.", _text),
    Knob("OPFLOW_LOG_DIR", "a path", "./logs", USER, CLI,
         "`opflow run`, `runs` and `plan`: the default for `--log-dir`.", _text),
    Knob("OPFLOW_START_METHOD", "fork, forkserver or spawn", "forkserver on Linux, else spawn", USER, RUN,
         "How the process pool starts its workers (multiprocessing's start method).",
         _one_of("fork", "forkserver", "spawn")),
    Knob("OPFLOW_BATCH_SECONDS", "a number of seconds >= 0", "0.02", USER, RUN,
         "About how much work one work item of the process pool holds; 0: one task per item.", _seconds),
    Knob("NO_COLOR", "any value", "unset: colour on a terminal", USER, CLI,
         "Set (to anything): no colour in the console output (https://no-color.org); `--color` overrides it.",
         _text),
    Knob("FORCE_COLOR", "any value", "unset: colour on a terminal", USER, CLI,
         "Set (to anything): colour in the console output even off a terminal, a CI log "
         "(https://force-color.org); NO_COLOR and `--no-color` win over it.", _text),
    Knob("TERM", "a terminal type", "as the terminal sets it", USER, CLI,
         "`dumb`: no live display, one line per event.", _text),
    Knob("OPFLOW_PING_TIMEOUT", "a number of seconds > 0", "10", TEST, RUN,
         "How long each `--ping` request may take (a test's silent server).", _positive_seconds),
    Knob("OPFLOW_SHM_DIR", "a path", "/dev/shm", TEST, RUN,
         "The folder large results are shared through (a test's private folder).", _text),
    Knob("OPFLOW_SHM_LIMIT", "a whole number of bytes >= 0", "the free shared memory", TEST, RUN,
         "Caps the shared memory large results may use (0: none; they go through the store).", _at_least(0)),
]

KNOBS: dict[str, Knob] = {knob.name: knob for knob in _KNOBS}


def read(name: str, environ=None):
    """The value of knob `name`, parsed; None when unset or empty; `KnobError` when bad."""
    knob = KNOBS[name]
    text = (os.environ if environ is None else environ).get(name)
    if not text:
        return None
    try:
        return knob.parse(text)
    except ValueError:
        raise KnobError(f"{name}={text!r}: not {knob.kind} (see docs/environment.md)") from None


def check(scope: str | None = None, environ=None) -> None:
    """Read every knob (or those of `scope`): one `KnobError` naming each bad value, one a line."""
    problems = []
    for name in [k.name for k in _KNOBS if scope is None or k.scope == scope]:
        try:
            read(name, environ)
        except KnobError as error:
            problems.append(str(error))
    if problems:
        raise KnobError("\n".join(problems))


def markdown_table(audience: str) -> str:
    """The knobs for `audience` as the table docs/environment.md holds."""
    rows = ["| variable | value | default | read by | what it does |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| `{k.name}` | {k.kind} | {k.default} | {k.scope} | {k.means} |"
             for k in _KNOBS if k.audience == audience]
    return "\n".join(rows)
