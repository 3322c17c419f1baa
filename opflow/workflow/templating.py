"""`${...}` references in config values: which are opflow's, and their values.

The rule (README, "Templating"): a reference is opflow's when its name has a dot
(`${params.n}`, `${params.db.host}`, `${env.HOME}`, `${env.TMP:-/tmp}`,
`${item.name}`), or is exactly `${item}` or `${index}`, or names an upstream task's result (`${tasks.ID.result}`,
`${tasks.ID.result.KEY}`). Everything else
(`${HOME}`, `${1}`, `${x:-y}`, `${#a}`) is left as it is, for the shell. A shell
variable never has a dot in its name, so `${param.x}` or `${parms.x}` cannot be
meant for the shell: it is a typo in one of opflow's, and an error. `$${` is a
literal `${`.

A string that is exactly one reference takes the value's own type (`${params.n}`
is an int); elsewhere the value is written into the string (JSON for anything
but a string). Substituted into a shell command, each value is shell-quoted: a
param holding `; rm -rf ~` is one argument, never code.

An upstream result exists only once its task has run: when the workflow is read,
`${tasks...}` is checked (a task upstream of this one, `Deferred`), and a string
holding one is rendered in two steps: its other references now (their values
escaped, so that none of them can read as a reference later), the results when
the task is dispatched (`render_deferred`, in the coordinator). Only plain data
(`plain_value`) flows into a config.
"""
from __future__ import annotations

__all__ = ["Scope", "Deferred", "NotPlain", "render_value", "render_deferred", "plain_value", "NAMESPACES", "LATER",
           "resolve_reference",
           "TemplateError"]

import copy
import difflib
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from opflow.workflow.shell_quotes import undone_quoting_at

NAMESPACES = ("params", "env", "item", "matrix", "tasks")
_BARE = ("item", "index")
_TOKEN = re.compile(r"\$\$\{|\$\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_MISSING = object()
_DEFERRED = object()  # a `${tasks...}` reference, checked when the workflow is read: its value comes later
#: `Scope.item` and `.index` of a foreach over an upstream result, while the workflow is read:
#: `${item...}` is accepted, its value comes with the instance (dispatch/fan_out.py).
LATER = object()


@dataclass
class Scope:
    """What references can name. `item`/`index` exist only in a foreach instance; `tasks`
    is a `Deferred` when the workflow is read, and upstream task id -> its result (a
    plain value or a `NotPlain`) when a task is dispatched."""

    params: Mapping[str, Any]
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    item: Any = _MISSING
    index: Any = _MISSING
    matrix: Any = _MISSING  # a matrix instance's {NAME: value}
    tasks: Any = _MISSING


class TemplateError(Exception):
    pass


class Deferred:
    """`${tasks.ID.result...}` while the workflow is read: ID must be a task upstream of
    `task_id` (`upstream()`: its transitive upstream ids, as written); `reads` collects the
    ids named, `paths` the config paths of the strings to render at dispatch."""

    def __init__(self, task_id: str, known: Any, upstream: Any):
        self.task_id = task_id
        self.known = known
        self.upstream = upstream
        self.reads: set = set()
        self.paths: list = []

    def check(self, task_id: str, inner: str) -> None:
        if task_id not in self.known:
            close = difflib.get_close_matches(task_id, sorted(self.known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise TemplateError(f"'${{{inner}}}': no task '{task_id}'{hint}")
        if task_id not in self.upstream():
            raise TemplateError(f"'${{{inner}}}': task '{task_id}' is not upstream of '{self.task_id}' "
                                f"(a task reads only the results of tasks it depends on: add it to depends_on)")
        self.reads.add(task_id)


class NotPlain:
    """Stands for a result that is not plain data (a DataFrame, an object): it cannot go into a config."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __reduce__(self):
        return NotPlain, (self.type_name,)


_PLAIN_SCALARS = (str, int, float, bool, type(None))


def plain_value(value, _depth: int = 0):
    """`value` as plain data (str, numbers, bool, None, lists, str-keyed mappings; a tuple
    becomes a list), or a `NotPlain` naming what it is."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return value
    if _depth < 100:
        if kind is list or kind is tuple:
            items = [plain_value(v, _depth + 1) for v in value]
            bad = next((v for v in items if type(v) is NotPlain), None)
            return bad if bad is not None else items
        if kind is dict and all(type(k) is str for k in value):
            items = {k: plain_value(v, _depth + 1) for k, v in value.items()}
            bad = next((v for v in items.values() if type(v) is NotPlain), None)
            return bad if bad is not None else items
    return NotPlain(f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__)


def render_value(value, scope: Scope, *, quote_paths: tuple = (), path: tuple = ()) -> tuple[Any, list]:
    """`value` with every opflow reference replaced; and [(path, message)] problems.

    `quote_paths`: key paths (tuples) whose strings are shell commands. With
    `scope.tasks` a `Deferred`, a string holding `${tasks...}` keeps those for
    `render_deferred`, and its path goes to `scope.tasks.paths`.
    """
    problems: list = []
    rendered = _walk(value, scope, quote_paths, path, problems)
    return rendered, problems


def render_deferred(config: dict, paths: tuple, tasks: Mapping[str, Any], quote_paths: tuple = ()) -> dict:
    """A config whose strings at `paths` (left by `render_value`) get their `${tasks...}` values;
    raises TemplateError (a missing key, a result that is not plain data)."""
    config = copy.deepcopy(config)
    scope = Scope(params={}, env={}, tasks=tasks)
    for path in paths:
        holder = config
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = _render_string(holder[path[-1]], scope, quote=path in quote_paths)[0]
    return config


def _walk(value, scope, quote_paths, path, problems):
    if isinstance(value, str):
        try:
            rendered, deferred = _render_string(value, scope, quote=path in quote_paths)
        except TemplateError as exc:
            problems.append((path, str(exc)))
            return value
        if deferred:
            scope.tasks.paths.append(path)
        return rendered
    # A container comes back as the same object when nothing in it changed (most
    # configs have no reference: no copy, and the caller can tell).
    if isinstance(value, dict):
        items = {k: _walk(v, scope, quote_paths, path + (k,), problems) for k, v in value.items()}
        return value if all(items[k] is v for k, v in value.items()) else items
    if isinstance(value, list):
        items = [_walk(v, scope, quote_paths, path + (i,), problems) for i, v in enumerate(value)]
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def _render_string(text: str, scope: Scope, quote: bool) -> tuple[Any, bool]:
    """The rendered value, and whether `${tasks...}` references were left in it (Deferred)."""
    if "${" not in text:
        return text, False
    whole = _TOKEN.fullmatch(text)
    if whole and whole.group(0) != "$${":
        found = _resolve(whole.group(1), scope)
        if found is _DEFERRED:
            if quote:
                _refuse_undone_quoting(text, [(0, text)])
            return text, True
        if found is not _MISSING:
            value = copy.deepcopy(found)
            return (shlex.quote(_as_text(value)) if quote else value), False  # exactly one reference keeps its type
    values = []  # (match, value) of each reference: _MISSING for the shell's
    for match in _TOKEN.finditer(text):
        values.append((match, None if match.group(0) == "$${" else _resolve(match.group(1), scope)))
    # Results come at dispatch: everything else is rendered now, each value escaped
    # ($${) so that only the references written here are rendered then.
    later = any(value is _DEFERRED for _, value in values)
    out = []
    last = 0
    ours = []  # (position, reference) of each of opflow's references
    for match, value in values:
        out.append(text[last:match.start()])
        last = match.end()
        if value is None:  # $${
            out.append("$${" if later else "${")
        elif value is _MISSING or value is _DEFERRED:  # the shell's, or for later: leave it
            out.append(match.group(0))
            if value is _DEFERRED:
                ours.append((match.start(), match.group(0)))
        else:
            ours.append((match.start(), match.group(0)))
            piece = _as_text(value)
            piece = shlex.quote(piece) if quote else piece
            out.append(piece.replace("${", "$${") if later else piece)
    out.append(text[last:])
    if quote and ours:
        _refuse_undone_quoting(text, ours)
    return "".join(out), later


def _refuse_undone_quoting(command: str, references: list) -> None:
    undone = undone_quoting_at(command, [position for position, _ in references])
    for position, reference in references:
        if position in undone:
            raise TemplateError(f"'{reference}' sits inside {undone[position]} in a shell command, where the "
                                f"quoting opflow gives each value is undone (a value holding $(...) would run): "
                                f"write it as a word of its own, outside any quotes or here-document; opflow quotes the value itself")


def _as_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _resolve(inner: str, scope: Scope):
    """The value `${inner}` names, or _MISSING when the reference is the shell's."""
    if inner in _BARE:
        value = getattr(scope, inner)
        if value is LATER:
            return _DEFERRED
        if value is _MISSING:
            raise TemplateError(f"'${{{inner}}}' is only defined in a task with 'foreach'")
        return value
    head = _NAME.match(inner)
    if not head or inner[head.end():head.end() + 1] != ".":
        return _MISSING  # ${HOME}, ${x:-y}, ${#a}: the shell's
    namespace = head.group(0)
    rest = inner[head.end() + 1:]
    if namespace not in NAMESPACES:
        close = difflib.get_close_matches(namespace, NAMESPACES, n=1, cutoff=0.5)
        hint = (f"did you mean '${{{close[0]}.{rest}}}'?" if close else
                "opflow knows ${params.NAME}, ${env.NAME}, ${item}, ${index}, ${matrix.NAME}, ${tasks.ID.result}")
        raise TemplateError(f"unknown reference '${{{inner}}}' ({hint})")
    if namespace == "tasks":
        return _task_result(rest, inner, scope)
    default = _MISSING
    if namespace == "env" and ":-" in rest:
        rest, _, default = rest.partition(":-")
    segments = rest.split(".")
    if not all(_SEGMENT.fullmatch(s) for s in segments):
        raise TemplateError(f"bad reference '${{{inner}}}': write ${{{namespace}.NAME}} or ${{{namespace}.NAME.key}}")
    if namespace == "env":
        if len(segments) != 1:
            raise TemplateError(f"bad reference '${{{inner}}}': an environment variable has no keys")
        value = scope.env.get(segments[0], default)
        if value is _MISSING:
            raise TemplateError(f"environment variable '{segments[0]}' is not set "
                                f"(give a default: '${{env.{segments[0]}:-...}}')")
        return value
    if namespace == "matrix":
        if scope.matrix is _MISSING:
            raise TemplateError(f"'${{{inner}}}' is only defined in a task with 'matrix'")
        return _dig(scope.matrix, segments, "matrix", inner)
    if namespace == "item":
        if scope.item is LATER:
            return _DEFERRED
        if scope.item is _MISSING:
            raise TemplateError(f"'${{{inner}}}' is only defined in a task with 'foreach'")
        return _dig(scope.item, segments, "item", inner)
    return _dig(scope.params, segments, "params", inner)


def resolve_reference(inner: str, scope: Scope):
    """The value of one `${inner}` (None for a `${tasks...}` while the workflow is read, `Deferred`);
    raises TemplateError, also for a reference that is not opflow's."""
    value = _resolve(inner, scope)
    if value is _MISSING:
        raise TemplateError(f"'${{{inner}}}' is not a reference opflow knows")
    return None if value is _DEFERRED else value


def _task_result(rest: str, inner: str, scope: Scope):
    """`${tasks.ID.result.KEY...}`: _DEFERRED while the workflow is read, its value at dispatch."""
    parts = rest.split(".")
    cuts = [i for i, part in enumerate(parts) if part == "result" and i > 0]  # (an id may hold dots)
    tasks = scope.tasks
    known = tasks.known if isinstance(tasks, Deferred) else (tasks if tasks is not _MISSING else ())
    cut = next((i for i in cuts if ".".join(parts[:i]) in known), cuts[0] if cuts else None)
    if cut is None or not all(_SEGMENT.fullmatch(s) for s in parts[cut + 1:]):
        raise TemplateError(f"bad reference '${{{inner}}}': write ${{tasks.ID.result}} or ${{tasks.ID.result.KEY}}")
    task_id, keys = ".".join(parts[:cut]), parts[cut + 1:]
    if isinstance(tasks, Deferred):
        tasks.check(task_id, inner)
        return _DEFERRED
    if tasks is _MISSING:
        raise TemplateError(f"'${{{inner}}}': an upstream result goes into 'config', 'when' or 'foreach', not here")
    if task_id not in tasks:
        raise TemplateError(f"'${{{inner}}}': task '{task_id}' has no result (it did not succeed)")
    value = tasks[task_id]
    if type(value) is NotPlain:
        raise TemplateError(f"'${{{inner}}}': the result of '{task_id}' is a {value.type_name}, not plain data "
                            f"(text, numbers, true/false/null, lists, mappings): it cannot go into a config")
    return _dig(value, keys, f"tasks.{task_id}.result", inner)


def _dig(value, segments, root: str, inner: str):
    where = root
    for segment in segments:
        if isinstance(value, dict):
            if segment not in value:
                known = [str(k) for k in value]
                close = difflib.get_close_matches(segment, known, n=1)
                what = {"params": "param", "matrix": "matrix name"}.get(where, f"key of {where}")
                hint = f"did you mean '{close[0]}'?" if close else ("known: " + ", ".join(known) if known else "none declared")
                raise TemplateError(f"'${{{inner}}}': no {what} '{segment}' ({hint})")
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit():
            if int(segment) >= len(value):
                raise TemplateError(f"'${{{inner}}}': {where} has {len(value)} items, no [{segment}]")
            value = value[int(segment)]
        else:
            raise TemplateError(f"'${{{inner}}}': {where} is a {type(value).__name__}, it has no key '{segment}'")
        where = f"{where}.{segment}"
    return value
