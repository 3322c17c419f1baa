"""From checked tasks to the tasks that run: the task keys trigger, cache, inputs, outputs and
foreach, templating, foreach fan-out and plugin config checks. Called by spec.py's
checker, which collects the problems (file:line: task 'id': ...).

    task draft ─ task_features ─▶ trigger, cache, inputs, outputs, foreach (checked shapes)
    all tasks ─ expand_tasks ─▶ ${...} rendered; `foreach` -> <id>[0], <id>[1], ...;
                                depends_on <id> -> its instances; config vs the plugin's schema
"""
from __future__ import annotations

__all__ = ["TRIGGERS", "FEATURE_KEYS", "FEATURE_DEFAULT_KEYS", "task_features", "default_features",
           "config_lines", "expand_tasks", "matrix_instances"]

import dataclasses
import difflib
import functools
import glob
import itertools
import json
import os
import re
from typing import Callable

import yaml

from opflow.workflow.conditions import parse_condition
from opflow.workflow.config_schema import check_config
from opflow.workflow.limits import MAX_ID_LENGTH
from opflow.workflow.templating import LATER, Deferred, Scope, render_value

TRIGGERS = ("all_success", "all_done", "one_failed")
FEATURE_KEYS = ("trigger", "cache", "inputs", "outputs", "foreach", "tags", "retry_on", "matrix", "when",
                "max_items")
FEATURE_DEFAULT_KEYS = ("cache", "retry_on")
#: A tag, and an exception type name of `retry_on` (a dotted name: `requests.ConnectionError` too).
_TAG = re.compile(r"[A-Za-z0-9_.-]+")
_EXCEPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_EXIT_STATUS = re.compile(r"exit:([0-9]{1,3})")
#: A matrix name (`${matrix.NAME}`), and a value as it is written into an instance id (and so a file name).
_MATRIX_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATRIX_VALUE = re.compile(r"[A-Za-z0-9_.:@+-]+")
MAX_INSTANCES = 100_000  # a foreach larger than this is a typo (or a job for another tool)
#: A foreach over an upstream result makes at most this many instances (`max_items`), by default.
DEFAULT_MAX_ITEMS = 10_000

#: Which config strings of which plugin are shell commands (their values are shell-quoted).
SHELL_KEYS = {"shell": (("command",),)}


def default_features(checker, items) -> dict:
    """The `defaults:` keys this module owns (`cache`, `retry_on`)."""
    found = {}
    if "retry_on" in items:
        retry_on = _retry_on(checker, items["retry_on"][1], None)
        if retry_on is not None:
            found["retry_on"] = retry_on
    if "cache" in items:
        value = checker.value(items["cache"][1])
        if not isinstance(value, bool):
            checker.problem(f"'cache' must be true or false, got {value!r}", items["cache"][1])
        else:
            found["cache"] = value
    return found


def task_features(checker, items, task_id, defaults: dict) -> dict:
    """trigger, cache, inputs, outputs, foreach, tags, retry_on, matrix, when,
    max_items of one task (shapes checked; values rendered later)."""
    features = {"trigger": "all_success", "cache": bool(defaults.get("cache", False)), "inputs": (), "outputs": (),
                "foreach": None,
                "tags": (), "retry_on": defaults.get("retry_on"), "matrix": None, "when": None,
                "max_items": DEFAULT_MAX_ITEMS}
    if "tags" in items:
        node = items["tags"][1]
        value = checker.value(node)
        if not isinstance(value, list) or not all(isinstance(v, str) and _TAG.fullmatch(v) for v in value):
            checker.problem(f"'tags' must be a list of names ([A-Za-z0-9_.-]+), got {value!r}"[:200], node, task_id)
        else:
            features["tags"] = tuple(dict.fromkeys(value))
    if "retry_on" in items:
        features["retry_on"] = _retry_on(checker, items["retry_on"][1], task_id)
    if "matrix" in items:
        if "foreach" in items:
            checker.problem("a task has 'foreach' or 'matrix', not both (a matrix of one name is a foreach)",
                            items["matrix"][0] if items["matrix"][0] is not None else items["matrix"][1], task_id)
        else:
            features["matrix"] = _matrix(checker, items["matrix"][1], task_id)
    if "trigger" in items:
        node = items["trigger"][1]
        value = checker.value(node)
        if value not in TRIGGERS:
            import difflib

            close = difflib.get_close_matches(str(value), TRIGGERS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "one of: " + ", ".join(TRIGGERS)
            checker.problem(f"'trigger' {value!r} is not a trigger rule ({hint})", node, task_id)
        else:
            features["trigger"] = value
    if "cache" in items:
        node = items["cache"][1]
        value = checker.value(node)
        if not isinstance(value, bool):
            checker.problem(f"'cache' must be true or false, got {value!r}", node, task_id)
        else:
            features["cache"] = value
    if "inputs" in items:
        node = items["inputs"][1]
        value = checker.value(node)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            checker.problem("'inputs' must be a list of paths or globs (relative: to the workflow file)", node, task_id)
        else:
            features["inputs"] = tuple(value)
    if "outputs" in items:
        node = items["outputs"][1]
        value = checker.value(node)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            checker.problem("'outputs' must be a list of paths or globs (relative: to the workflow file), "
                            f"got {value!r}"[:200], node, task_id)
        else:
            features["outputs"] = tuple(value)
    if "foreach" in items:
        node = items["foreach"][1]
        value = checker.value(node)
        if not isinstance(value, (list, str)):
            checker.problem(f"'foreach' must be a list or '${{params.NAME}}', got {type(value).__name__}", node, task_id)
        else:
            features["foreach"] = value
    if "max_items" in items:
        node = items["max_items"][1]
        value = checker.value(node)
        if "foreach" not in items:
            checker.problem("'max_items' goes with 'foreach: ${tasks.ID.result...}'", node, task_id)
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INSTANCES:
            checker.problem(f"'max_items' must be a whole number from 1 to {MAX_INSTANCES}, got {value!r}"[:200],
                            node, task_id)
        else:
            features["max_items"] = value
    if "when" in items:
        node = items["when"][1]
        condition, problem = parse_condition(checker.value(node))
        if problem:
            checker.problem(problem, node, task_id)
        else:
            features["when"] = condition
    return features


def _retry_on(checker, node, task_id) -> tuple[str, ...] | None:
    """`retry_on: [ConnectionError, exit:75]`: exception type names and shell exit statuses."""
    value = checker.value(node)
    if not isinstance(value, list):
        checker.problem(f"'retry_on' must be a list of exception type names or exit:N, got {value!r}"[:200],
                        node, task_id)
        return None
    good = True
    for i, entry in enumerate(value):
        where = node.value[i] if isinstance(node, yaml.SequenceNode) else node
        status = _EXIT_STATUS.fullmatch(entry) if isinstance(entry, str) else None
        if status is not None and int(status.group(1)) > 255:
            status = None
        if status is None and not (isinstance(entry, str) and _EXCEPTION_NAME.fullmatch(entry)):
            hint = " (an exit status is 0 to 255)" if isinstance(entry, str) and entry.startswith("exit:") else ""
            checker.problem(f"retry_on: {entry!r} is neither an exception type name (ConnectionError) nor "
                            f"exit:N{hint}"[:200], where, task_id)
            good = False
    return tuple(value) if good else None


def _child(node, key):
    """The node under `key` of a mapping node (a plain value stands for itself: the quick read)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return value_node
        return node
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]
    return node


def _matrix_text(value) -> str:
    """A matrix value as an instance id shows it: `true`, `3`, `3.11`, `linux`."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _matrix(checker, node, task_id) -> dict | None:
    """`matrix: {NAME: [values], ..., exclude: [{NAME: value}, ...]}`, checked: {names: values} and excludes."""
    value = checker.value(node)
    if not isinstance(value, dict) or not value:
        checker.problem(f"'matrix' must be a mapping of names to lists of values, got {value!r}"[:200], node, task_id)
        return None
    good = True
    names: dict[str, list] = {}
    for name, values in value.items():
        if name == "exclude":
            continue
        where = _child(node, name)
        if not isinstance(name, str) or not _MATRIX_NAME.fullmatch(name):
            checker.problem(f"matrix: {name!r} is not a name (${{matrix.NAME}}: letters, digits, _)", where, task_id)
            good = False
        elif not isinstance(values, list) or not values:
            checker.problem(f"matrix: '{name}' must be a non-empty list of values, got {values!r}"[:200], where, task_id)
            good = False
        else:
            for i, item in enumerate(values):
                text = _matrix_text(item) if isinstance(item, (str, int, float)) else None
                if text is None or not _MATRIX_VALUE.fullmatch(text):
                    checker.problem(f"matrix: '{name}': {item!r} cannot name an instance ({task_id}[{name}=...]): "
                                    "a value is a string, number or boolean of [A-Za-z0-9_.:@+-]"[:300],
                                    _child(where, i), task_id)
                    good = False
                elif text in [_matrix_text(v) for v in values[:i]]:
                    checker.problem(f"matrix: '{name}' lists {item!r} twice", _child(where, i), task_id)
                    good = False
            names[name] = values
    if not names and good:
        checker.problem("'matrix' needs at least one name with a list of values", node, task_id)
        return None
    excludes = value.get("exclude", [])
    where = _child(node, "exclude")
    if not isinstance(excludes, list):
        checker.problem(f"matrix: 'exclude' must be a list of {{NAME: value}} mappings, got {excludes!r}"[:200],
                        where, task_id)
        return None
    for i, exclude in enumerate(excludes):
        at = _child(where, i)
        if not isinstance(exclude, dict) or not exclude:
            checker.problem(f"matrix: exclude: each entry is a mapping {{NAME: value}}, got {exclude!r}"[:200], at, task_id)
            good = False
            continue
        for key, wanted in exclude.items():
            if key not in names:
                close = difflib.get_close_matches(str(key), list(names), n=1)
                hint = f"did you mean '{close[0]}'?" if close else "names: " + ", ".join(names)
                checker.problem(f"matrix: exclude: {key!r} is not a matrix name ({hint})", _child(at, key), task_id)
                good = False
            elif _matrix_text(wanted) not in [_matrix_text(v) for v in names[key]]:
                known = ", ".join(_matrix_text(v) for v in names[key])
                checker.problem(f"matrix: exclude: {key}: {wanted!r} is not one of its values ({known})",
                                _child(at, key), task_id)
                good = False
    # Even with a problem (already reported): its names still check the task's ${matrix.NAME} references.
    return {"names": names, "exclude": excludes if good else []} if names else None


def matrix_instances(task_id: str, matrix: dict) -> list[tuple[str, dict]]:
    """(instance id, {name: value}) of each combination not excluded, the first name varying slowest."""
    names = matrix["names"]
    out = []
    for combination in itertools.product(*names.values()):
        values = dict(zip(names, combination))
        if any(all(_matrix_text(values[k]) == _matrix_text(v) for k, v in exclude.items())
               for exclude in matrix["exclude"]):
            continue
        out.append((f"{task_id}[{','.join(f'{k}={_matrix_text(v)}' for k, v in values.items())}]", values))
    return out


def config_lines(node, path: tuple = (), lines: dict | None = None) -> dict:
    """key path -> 1-based line, for every value inside a config node (merge keys aside)."""
    lines = {} if lines is None else lines
    if len(lines) > 10_000 or len(path) > 50:  # an alias bomb: stop mapping, lines fall back to the task's
        return lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                config_lines(value_node, path + (key_node.value,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            config_lines(item, path + (i,), lines)
    return lines


class _LazyLines(dict):
    """config_lines of a node, worked out on first use (only a task with a problem needs them)."""

    def __init__(self, node):
        super().__init__()
        self._node = node

    def _fill(self):
        if self._node is not None:
            self.update(config_lines(self._node))
            self._node = None

    def __contains__(self, key):
        self._fill()
        return super().__contains__(key)

    def get(self, key, default=None):
        self._fill()
        return super().get(key, default)


def _line_of(lines: dict, path: tuple, fallback: int | None) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get((), fallback)


def expand_tasks(checker, tasks: list, params: dict,
                 plugin_checks: Callable[[str], tuple[dict | None, Callable | None]] | None,
                 env=None) -> tuple[list, dict]:
    """The runnable tasks (foreach instances in place of their task) and the groups
    (foreach task id -> its instance ids, in order). Problems go to `checker`.
    `env`: what `${env.NAME}` reads (default: the environment)."""
    env = os.environ if env is None else env
    out = []
    groups: dict[str, tuple[str, ...]] = {}
    checked: dict = {}  # _flat_key -> check_config's findings
    known = {t.id for t in tasks}
    upstream_of = _UpstreamOf(tasks)  # ${tasks.ID...} names a task upstream, as written
    matched: dict = {}  # inputs: pattern -> whether it names a file (a pattern many tasks share: looked up once)

    def config_problems(plugin, schema, config) -> list:
        key = _flat_key(plugin, config)
        found = checked.get(key) if key is not None else None
        if found is None:
            found = check_config(schema, config)
            if key is not None and len(checked) < 10_000:
                checked[key] = found
        return found

    for task in tasks:
        if (task.foreach is None and task.matrix is None and not task.inputs and not task.outputs and task.when is None
                and task.id in checker.plain_configs):
            # Nothing to render (most tasks of a 100,000-task file): only the plugin's
            # checks. Any problem is worded by the full walk below.
            schema, check_task = plugin_checks(task.plugin) if plugin_checks is not None else (None, None)
            if task.id not in checker.bad_config and not (
                    (schema is not None and config_problems(task.plugin, schema, task.config))
                    or (check_task is not None and check_task(task.config, task.depends_on))):
                out.append(task)
                continue
        feature_lines = checker.feature_lines.get(task.id, {})
        reported: set = set()
        lines = _LazyLines(checker.config_nodes.get(task.id))

        def report(message, line, task=task, reported=reported):
            if (line, message) not in reported:
                reported.add((line, message))
                checker.problem(message, task_id=task.id, line=line or task.line)

        def later(task=task):  # each variant collects the ${tasks...} it holds
            return Deferred(task.id, known, functools.partial(upstream_of.of, task.id))

        variants = [(task.id, Scope(params, env, tasks=later()))]
        if task.foreach is not None:
            items = task.foreach
            if isinstance(items, str):
                source = later()
                items, problems = render_value(items, Scope(params, env, tasks=source))
                for _, message in problems:
                    report(f"foreach: {message}", feature_lines.get("foreach"))
                if source.reads and not problems:
                    # Over an upstream result: its instances are made when that task has run
                    # (dispatch/fan_out.py); checked here, the task stands for them until then.
                    out.append(_dynamic_foreach(task, items, source, later, params, report, feature_lines, lines))
                    continue
                if problems:
                    items = []
                elif not isinstance(items, list):
                    report(f"'foreach' must give a list; {task.foreach!r} is a {type(items).__name__}",
                           feature_lines.get("foreach"))
                    items = []
            if len(items) > MAX_INSTANCES:
                report(f"'foreach' has {len(items)} items; at most {MAX_INSTANCES}", feature_lines.get("foreach"))
                items = []
            variants = [(f"{task.id}[{i}]", Scope(params, env, item=item, index=i, tasks=later()))
                        for i, item in enumerate(items)]
            groups[task.id] = tuple(v[0] for v in variants)
        elif task.matrix is not None:
            variants = [(instance_id, Scope(params, env, matrix=values, tasks=later()))
                        for instance_id, values in matrix_instances(task.id, task.matrix)]
            too_long = [v for v, _ in variants if len(v) > MAX_ID_LENGTH]
            if too_long:
                report(f"matrix: instance id '{too_long[0][:60]}...' is {len(too_long[0])} characters long; "
                       f"at most {MAX_ID_LENGTH}", feature_lines.get("matrix"))
                variants = []
            groups[task.id] = tuple(v[0] for v in variants)
        schema, check_task = plugin_checks(task.plugin) if plugin_checks is not None else (None, None)
        if task.id in checker.bad_config:
            schema, check_task = None, None
        fans_out = task.foreach is not None or task.matrix is not None
        plain = not fans_out and task.id in checker.plain_configs
        for instance_id, scope in variants:
            if plain:
                config, problems = task.config, []
            else:
                config, problems = render_value(task.config, scope, quote_paths=SHELL_KEYS.get(task.plugin, ()))
            for path, message in problems:
                report(message, _line_of(lines, path, task.line))
            # (No upstream result here: the cache key is read before the task runs.)
            inputs, input_problems = render_value(list(task.inputs), Scope(params, item=scope.item, index=scope.index))
            for _, message in input_problems:
                report(f"inputs: {message}", feature_lines.get("inputs"))
            if not input_problems and not task.depends_on and checker.directory is not None:
                # (With upstream tasks, one of them may make the file before this task starts.)
                for pattern in inputs:
                    if not _matches_a_file(checker.directory, str(pattern), matched):
                        report(f"inputs: {str(pattern)!r} matches no file (looked for in {checker.directory})",
                               feature_lines.get("inputs"))
            outputs, output_problems = render_value(list(task.outputs), scope)
            for _, message in output_problems:
                report(f"outputs: {message}", feature_lines.get("outputs"))
            if not problems and schema is not None:
                for path, message in config_problems(task.plugin, schema, config):
                    if not any(path[:len(p)] == p for p in scope.tasks.paths):  # (values known at dispatch)
                        report(message, _line_of(lines, path, task.line))
            if check_task is not None:
                for message in check_task(config, task.depends_on):
                    key, message = message if isinstance(message, tuple) else (("source",), message)
                    report(message, lines.get(key, task.line))
            if task.when is not None:
                for message in task.when.check(scope):
                    report(f"when: {message}", feature_lines.get("when"))
            later = scope.tasks
            if not fans_out and config is task.config and not task.inputs and not task.outputs and not later.reads:
                out.append(task)  # nothing to render: keep the spec (100,000-task files)
                continue
            out.append(dataclasses.replace(task, id=instance_id, config=config,
                                           inputs=tuple(str(i) for i in inputs),
                                           outputs=tuple(str(o) for o in outputs),
                                           group=task.id if fans_out else None,
                                           deferred=tuple(later.paths), reads=tuple(sorted(later.reads))))
    if groups:
        expanded: dict[tuple, tuple] = {}
        out = [_with_instances(t, groups, expanded) for t in out]
    return out, groups


def _dynamic_foreach(task, text: str, source, scope_of, params: dict, report, lines: dict, config_lines):
    """The task of a `foreach: ${tasks.ID.result...}`, as it stands until ID has run: its
    config is checked now (`${item}` accepted), rendered per instance then."""
    if not _WHOLE_REFERENCE.fullmatch(text.strip()):
        report(f"'foreach' over an upstream result must be exactly one reference, such as "
               f"'${{tasks.{sorted(source.reads)[0]}.result}}', got {text!r}", lines.get("foreach"))
    reads = set(source.reads)
    scope = Scope(params, item=LATER, index=LATER, tasks=scope_of())
    for path, message in render_value(task.config, scope, quote_paths=SHELL_KEYS.get(task.plugin, ()))[1]:
        report(message, _line_of(config_lines, path, task.line))
    for _, message in render_value(list(task.inputs), Scope(params, item=LATER, index=LATER))[1]:
        report(f"inputs: {message}", lines.get("inputs"))
    reads |= scope.tasks.reads
    if task.when is not None:
        when_scope = Scope(params, tasks=scope_of())
        for message in task.when.check(when_scope):
            report(f"when: {message}", lines.get("when"))
        reads |= when_scope.tasks.reads
    return dataclasses.replace(task, foreach=text.strip(), dynamic=True, reads=tuple(sorted(reads)))


_WHOLE_REFERENCE = re.compile(r"\$\{[^{}]*\}")


class _UpstreamOf:
    """`task_id in upstream_of[x]`-style reads of each task's transitive upstream, as written
    (ids of foreach tasks, not of their instances); worked out for the tasks that ask."""

    def __init__(self, tasks: list):
        self._deps = {t.id: t.depends_on for t in tasks}
        self._sets: dict = {}

    def of(self, task_id: str) -> set:
        found = self._sets.get(task_id)
        if found is None:
            found, stack = set(), list(self._deps.get(task_id, ()))
            while stack:  # iterative, and safe on a cycle (reported elsewhere)
                dep = stack.pop()
                if dep not in found:
                    found.add(dep)
                    stack.extend(self._deps.get(dep, ()))
            self._sets[task_id] = found
        return found


def _matches_a_file(directory, pattern: str, known: dict) -> bool:
    """Whether an `inputs:` path or glob names anything, as the cache key reads it (dispatch/cache.py)."""
    if pattern not in known:
        full = os.path.join(directory, os.path.expanduser(pattern))
        if glob.has_magic(full):
            known[pattern] = next(glob.iglob(full, recursive=True), None) is not None
        else:
            known[pattern] = os.path.lexists(full)
    return known[pattern]


_SCALARS = (str, int, float, bool, type(None))


def _flat_key(plugin: str, config: dict):
    """A hashable stand-in for a config of plain scalars (None for any other): a
    config repeated by thousands of tasks is checked against its schema once.
    The types are part of it (1, 1.0 and True are equal keys, not equal configs)."""
    if len(config) > 20:
        return None
    items = []
    for key, value in config.items():
        if type(value) not in _SCALARS:
            return None
        items.append((key, type(value), value))
    return plugin, tuple(items)


def _with_instances(task, groups: dict, expanded: dict):
    """depends_on a foreach task -> on each of its instances; `groups` tells the worker
    to give the task context[<id>] as the list of their results.

    The instances of one foreach task share one expanded tuple (`expanded`, keyed by
    the depends_on as written): N instances reading a group of N cost N pointers, not N².
    """
    if not any(d in groups for d in task.depends_on):
        return task
    shared = expanded.get(task.depends_on)
    if shared is None:
        deps: list[str] = []
        for dep in task.depends_on:
            deps.extend(groups.get(dep, (dep,)))
        shared = expanded[task.depends_on] = (tuple(deps), tuple((d, groups[d]) for d in task.depends_on if d in groups))
    return dataclasses.replace(task, depends_on=shared[0], groups=shared[1])
