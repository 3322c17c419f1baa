"""YAML workflow file -> validated, frozen `Workflow`.

Every check runs and every problem is reported at once, each with the file, the
1-based line and the task id, so one edit-validate round fixes a whole file.
Plugin names are passed in (`known_plugins`): this module knows nothing of
where plugins come from.
"""
from __future__ import annotations

__all__ = ["TaskSpec", "Workflow", "load_workflow", "params_digest", "TASK_KEYS", "TOP_KEYS"]

import contextlib
import difflib
import gc
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from opflow.masking import MIN_SECRET_LENGTH, Masker
from opflow.words import parse_duration, parse_size
from opflow.errors import OpflowError, Problem, WorkflowError
from opflow.workflow.expand import (
    DEFAULT_MAX_ITEMS,
    FEATURE_DEFAULT_KEYS,
    FEATURE_KEYS,
    default_features,
    expand_tasks,
    task_features,
)
from opflow.workflow.limits import MAX_FILE_BYTES, MAX_ID_LENGTH, check_node_tree
from opflow.workflow.env_file import read_env_file
from opflow.workflow.params import merge_params, split_declarations
from opflow.workflow.quick_read import Unreadable, read_plain
from opflow.workflow.resources import RESOURCE_TASK_KEYS, RESOURCE_TOP_KEYS, task_resources, workflow_resources
from opflow.workflow.merge_keys import flatten_merges

TOP_KEYS = ("name", "description", "params", "env_file", "defaults", "provenance", "tasks") + RESOURCE_TOP_KEYS
#: A distribution's name, as PyPI takes one (PEP 508): what `provenance:` lists.
DISTRIBUTION_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
TASK_KEYS = ("id", "plugin", "config", "depends_on", "retries", "retry_delay", "timeout", "max_memory",
             "keep_children") + FEATURE_KEYS + RESOURCE_TASK_KEYS
#: Keys a workflow-level `defaults:` block may set for every task.
DEFAULT_KEYS = ("retries", "retry_delay", "timeout", "max_memory")
ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
RESERVED_IDS = ("params", "upstream_failed")  # context keys opflow fills itself
# libyaml's parser when PyYAML was built with it: ~10x faster on large workflows,
# and its nodes carry the same line marks. Both only build plain data (safe).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)  # slots: a 100,000-task file has as many
class TaskSpec:
    id: str
    plugin: str
    config: dict = field(default_factory=dict, hash=False, compare=False)
    depends_on: tuple[str, ...] = ()
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    max_memory: int | None = None  # bytes
    keep_children: bool = False  # may processes the task started outlive it? (reaper.py)
    line: int | None = None
    trigger: str = "all_success"  # | "all_done" | "one_failed"
    cache: bool = False
    inputs: tuple[str, ...] = ()  # paths or globs whose content is part of the cache key
    outputs: tuple[str, ...] = ()  # paths or globs the task must leave; their sha256 go in its record
    foreach: Any = field(default=None, hash=False, compare=False)  # as written (instances have it too)
    group: str | None = None  # a foreach instance: the id of the task it came from
    #: (foreach task id, its instance ids) for each foreach task this task depends on
    groups: tuple = field(default=(), hash=False, compare=False)
    tags: tuple[str, ...] = ()  # names `--only tag:NAME` selects by
    #: {"names": {NAME: values}, "exclude": [...]}, checked (instances have it too); None: no matrix
    matrix: Any = field(default=None, hash=False, compare=False)
    #: Which failures are retried (exception type names, `exit:N`); None: any but a misconfiguration.
    retry_on: tuple[str, ...] | None = None
    cpus: int = 1  # pool slots it takes (workflow/resources.py)
    memory: int | str | None = None  # bytes of the memory budget it reserves, or "auto"
    limit: tuple[str, ...] = ()  # named limits it holds while it runs
    priority: int | None = None  # higher starts first; None: by the critical path
    when: Any = field(default=None, hash=False, compare=False)  # a conditions.Condition, or None
    #: `foreach: ${tasks.ID.result...}`: its instances are made at run time (dispatch/fan_out.py)
    dynamic: bool = False
    max_items: int = DEFAULT_MAX_ITEMS  # a dynamic foreach's instances, at most
    #: config key paths of the strings holding `${tasks...}`, rendered at dispatch (templating.py)
    deferred: tuple = field(default=(), hash=False, compare=False)
    #: ids (as written) of the upstream tasks whose results its config, `when` or `foreach` reads
    reads: tuple = field(default=(), hash=False, compare=False)

    @property
    def decided_when_ready(self) -> bool:
        """Is what it runs (whether, with which config) decided only once it is ready (`when`, results)?"""
        return bool(self.reads) or self.when is not None or self.dynamic


@dataclass(frozen=True)
class Workflow:
    name: str
    tasks: tuple[TaskSpec, ...]
    path: Path
    description: str = ""
    params: dict = field(default_factory=dict, hash=False, compare=False)
    sha256: str = ""
    #: foreach task id -> its instance ids (`<id>[0]`, ...), in order
    groups: dict = field(default_factory=dict, hash=False, compare=False)
    #: Distribution names whose versions run.json's `packages` records beyond opflow's own
    #: dependencies and what the python tasks' modules import (workflow key `provenance:`).
    provenance: tuple = ()
    #: `resources:` {cpus: N|"auto", memory: bytes|"auto"}, and `limits:` name -> Limit (resources.py).
    resources: dict = field(default_factory=dict, hash=False, compare=False)
    limits: dict = field(default_factory=dict, hash=False, compare=False)
    #: The names of the params declared `secret: true`.
    secret_params: tuple = ()
    #: The values opflow writes as `***` (opflow/masking.py): the secret params', the env_file's.
    secrets: tuple = field(default=(), repr=False)
    #: The env_file, resolved (None: none).
    env_file: str | None = None

    @property
    def directory(self) -> Path:
        return self.path.parent

    def task(self, task_id: str) -> TaskSpec:
        return self._by_id[task_id]

    @property
    def _by_id(self) -> dict[str, TaskSpec]:
        cached = self.__dict__.get("_by_id_cache")
        if cached is None:
            cached = {t.id: t for t in self.tasks}
            object.__setattr__(self, "_by_id_cache", cached)
        return cached


def params_digest(workflow: Workflow) -> str:
    """sha256 of the params as used, each secret in them by its own digest: what resume
    compares (run.json's params show a secret as `***`, which tells no two values apart)."""
    keyed = Masker(workflow.secrets).keyed(workflow.params)
    text = json.dumps(keyed, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_workflow(
    path: str | Path,
    known_plugins: Iterable[str] | None = None,
    *,
    param_overrides: dict[str, Any] | None = None,
    plugin_hint: str = "",
    plugin_checks=None,
    directory: Path | None = None,
    env_dir: Path | None = None,
) -> Workflow:
    """Read, parse and check a workflow file; raise `WorkflowError` listing every problem.

    `known_plugins=None` skips the plugin-name check (for callers that only need
    the graph). `plugin_hint` is appended to unknown-plugin messages (e.g. why a
    plugin file could not be read). `plugin_checks(name) -> (config schema, check_task)`
    checks each task's config (after templating) before anything runs. `directory`: the
    folder where each `inputs:` entry must name a file (None: not checked; resume reads a
    copy kept in the run directory for the original's folder). `env_dir`: where a relative
    `env_file:` is (default: the file's folder; resume reads a copy for the original's).
    """
    path = Path(path)
    shown = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise WorkflowError([Problem(shown, f"larger than {MAX_FILE_BYTES // 2**20} MB: split it, or generate fewer tasks")])
        raw = path.read_bytes()
    except FileNotFoundError:
        raise WorkflowError([Problem(shown, "no such file" + _file_hint(path))]) from None
    except IsADirectoryError:
        raise WorkflowError([Problem(shown, "is a directory, not a workflow file")]) from None
    except OSError as exc:
        raise WorkflowError([Problem(shown, f"cannot read: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkflowError([Problem(shown, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    try:
        with _gc_paused():
            return _parse_and_check(text, raw, path, shown, known_plugins, param_overrides, plugin_hint, plugin_checks,
                                    directory, env_dir)
    except MemoryError:
        pass
    # Out of the except block: the traceback, and with it every half-built object of
    # the parse, is gone, so reporting and exiting have memory to work with.
    del text
    gc.collect()
    raise OpflowError(f"{shown}: out of memory while reading the workflow ({len(raw):,} bytes); nothing was run")


@contextlib.contextmanager
def _gc_paused():
    """Parsing builds millions of objects that all stay alive: the cyclic collector
    would scan them again and again for nothing (100,000 tasks: 11.7 s with it,
    3.0 s without). The little garbage parsing leaves is collected once it is back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_and_check(text: str, raw: bytes, path: Path, shown: str, known_plugins: Iterable[str] | None,
                     param_overrides: dict[str, Any] | None, plugin_hint: str, plugin_checks=None,
                     directory: Path | None = None, env_dir: Path | None = None) -> Workflow:
    # The quick read first: plain data, no node tree (100,000 tasks: a fifth of the
    # memory, under half the time). Anything it cannot read or accept, the full
    # read below reads again, to word every problem with its line.
    try:
        document = read_plain(text)
    except Unreadable:
        document = None
    if document is not None:
        quick = _QuickChecker(shown, set(known_plugins) if known_plugins is not None else None, plugin_hint)
        quick.plugin_checks = plugin_checks
        quick.directory = directory
        quick.env_dir = env_dir
        quick.text = text
        try:
            return quick.check_plain(document, path.resolve(), hashlib.sha256(raw).hexdigest(), param_overrides or {})
        except _Unsure:
            pass
        finally:
            del document, quick
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        detail = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        tab = _tab_near(text, exc.problem_mark)
        if tab is not None:  # libyaml says only "found character that cannot start any token"
            line, detail = tab[0], f"a tab at column {tab[1]}: YAML indents with spaces only, never tabs"
        elif "found character that cannot start any token" in detail and exc.problem_mark is not None:
            detail = detail.replace("found character", f"found {_char_at(text, exc.problem_mark)!r}, a character")
        raise WorkflowError([Problem(shown, f"invalid YAML: {detail}", line)]) from None
    except yaml.YAMLError as exc:
        raise WorkflowError([Problem(shown, f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise WorkflowError([Problem(shown, "values nested too deeply to read")]) from None
    too_much = check_node_tree(root)  # before any value is built from the nodes
    if too_much is not None:
        raise WorkflowError([Problem(shown, too_much[0], too_much[1])])
    checker = _Checker(shown, set(known_plugins) if known_plugins is not None else None, plugin_hint)
    checker.plugin_checks = plugin_checks
    checker.directory = directory
    checker.env_dir = env_dir
    checker.text = text
    workflow = checker.check(root, path.resolve(), hashlib.sha256(raw).hexdigest(), param_overrides or {})
    if checker.problems:
        # In line order, whatever found them (problems with no line, such as a --param, first).
        raise WorkflowError(sorted(checker.problems, key=lambda p: p.line or 0))
    return workflow


def _file_hint(path: Path) -> str:
    """` (did you mean flows/nightly.yaml?)` for a workflow file named a little wrong, else ""."""
    try:
        names = [p.name for p in path.parent.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()]
    except OSError:  # no such folder, or not readable: nothing to suggest
        return ""
    stem_twin = [n for n in names if Path(n).stem == path.stem]  # nightly.yml -> nightly.yaml
    close = stem_twin or difflib.get_close_matches(path.name, names, n=1, cutoff=0.75)
    return f" (did you mean {path.parent / close[0]}?)" if close else ""


def _tab_near(text: str, mark) -> tuple[int, int] | None:
    """(1-based line, 1-based column) of the tab that a YAML error points at, if it is one.

    The parser reports a tab where it trips on it: at the mark, or (inside a
    plain scalar) on the mark's line, in its leading whitespace.
    """
    if mark is None:
        return None
    lines = text.splitlines()
    if mark.line >= len(lines):
        return None
    row = lines[mark.line]
    if mark.column < len(row) and row[mark.column] == "\t":
        return mark.line + 1, mark.column + 1
    indent = row[: len(row) - len(row.lstrip(" \t"))]
    if "\t" in indent:
        return mark.line + 1, indent.index("\t") + 1
    return None


def _char_at(text: str, mark) -> str:
    lines = text.splitlines()
    row = lines[mark.line] if mark.line < len(lines) else ""
    return row[mark.column] if mark.column < len(row) else ""


class _Checker:
    """Walks the composed YAML node tree, collecting problems with line numbers."""

    def __init__(self, path: str, known_plugins: set[str] | None, plugin_hint: str):
        self.path = path
        self.known_plugins = known_plugins
        self.plugin_hint = plugin_hint
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")
        self._broken_merges: dict[int, list] = {}
        self._bad_merge_ids: set[int] = set()
        self.config_nodes: dict = {}  # task_id -> its config node (lines of config keys, for messages)
        self.plain_configs: set = set()  # task ids whose config text has no ${ (nothing to render)
        self.text = ""
        self.feature_lines: dict[str, dict] = {}  # task_id -> key -> line (foreach, inputs)
        self.plugin_checks = None
        self.bad_config: set = set()
        self.duplicates: list = []  # (draft, notes) of each task whose id an earlier task has
        self.directory: Path | None = None  # where inputs: must name files (None: not checked)
        self.resources: dict = {}  # `resources:` and `limits:` (resources.py), read before the tasks
        self.limits: dict = {}
        self.env_dir: Path | None = None  # where a relative env_file: is (None: the workflow file's folder)

    def problem(self, message: str, node=None, task_id: str | None = None, line: int | None = None):
        if line is None and node is not None:
            line = node.start_mark.line + 1
        self.problems.append(Problem(self.path, message, line, task_id))

    def problem_in(self, file: str, message: str, line: int | None) -> None:
        """A problem in another file than the workflow (its env_file)."""
        self.problems.append(Problem(file, message, line))

    def value(self, node):
        """The Python value of a node (SafeLoader semantics)."""
        try:
            return self._constructor.construct_document(node)
        except yaml.YAMLError as exc:
            self.problem(f"invalid YAML value: {exc}", node)
            return None

    def mapping(self, node, what: str, task_id: str | None = None) -> dict[str, tuple[Any, Any]]:
        """key -> (key node, value node) of a mapping node; duplicate keys are problems."""
        items: dict[str, tuple[Any, Any]] = {}
        for message, merge_node in self._broken_merges.pop(id(node), ()):
            self.problem(message, merge_node, task_id)
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str):
                self.problem(f"{what}: keys must be strings, got {key!r}", key_node, task_id)
                continue
            if key in items:
                first = items[key][0].start_mark.line + 1
                self.problem(f"{what}: key '{key}' appears twice (first on line {first})", key_node, task_id)
                continue
            items[key] = (key_node, value_node)
        return items

    def duplicate_keys(self, node, what: str, task_id: str | None = None, _seen: set | None = None) -> None:
        """Keys that appear twice anywhere inside a value: PyYAML would silently keep the last."""
        seen = set() if _seen is None else _seen
        if id(node) in seen:  # an alias of a node already walked (anchors may even refer to themselves)
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    key = self.value(key_node)
                    if key in first:
                        self.problem(f"{what}: key '{key}' appears twice (first on line {first[key]})", key_node, task_id)
                    else:
                        first[key] = key_node.start_mark.line + 1
                self.duplicate_keys(value_node, what, task_id, seen)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                self.duplicate_keys(item, what, task_id, seen)

    def unknown_keys(self, items, allowed, what: str, task_id: str | None = None):
        for key, (key_node, _) in items.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
                self.problem(f"unknown key '{key}'{hint}", key_node, task_id)

    def check(self, root, path: Path, sha256: str, overrides: dict) -> Workflow | None:
        if root is None:
            self.problem("the file is empty; a workflow needs 'name' and 'tasks'")
            return None
        if not isinstance(root, yaml.MappingNode):
            self.problem("the top level must be a mapping with 'name' and 'tasks'", root)
            return None
        # Walking every node for merge keys costs ~0.5 s per 20,000 tasks: only when there is one.
        self._broken_merges = flatten_merges(root) if "<<" in self.text else {}
        self._bad_merge_ids = set(self._broken_merges)
        try:
            return self._check(root, path, sha256, overrides)
        finally:
            for problems in self._broken_merges.values():  # those no task-level check reported
                for message, node in problems:
                    self.problem(message, node)

    def _check(self, root, path: Path, sha256: str, overrides: dict) -> Workflow | None:
        top = self.mapping(root, "workflow")
        # `x-...` keys hold anchors for the rest of the file (as in docker-compose).
        self.unknown_keys({k: v for k, v in top.items() if not k.startswith("x-")}, TOP_KEYS, "workflow")
        name = self.required_string(top, "name", root)
        description = ""
        if "description" in top:
            description = self.value(top["description"][1])
            if description is not None and not isinstance(description, str):
                self.problem("'description' must be a string", top["description"][1])
            description = description if isinstance(description, str) else ""
        params = {}
        if "params" in top:
            self.duplicate_keys(top["params"][1], "params")
            params = self.value(top["params"][1])
            if params is None:
                params = {}
            elif not isinstance(params, dict):
                self.problem("'params' must be a mapping", top["params"][1])
                params = {}
        params_node = top["params"][1] if "params" in top else None
        declared, secret = split_declarations(
            params, lambda name, message: self.problem(message, _secret_node(params_node, name) or params_node))
        params = merge_params(declared, overrides, self.problem, secret)
        env_values, env_file = self.env_file(top["env_file"][1], path) if "env_file" in top else ({}, None)
        secrets = self.secret_values(params, secret, overrides, env_values)
        provenance = self.provenance(top["provenance"][1]) if "provenance" in top else ()
        defaults = self.defaults(top)
        self.resources, self.limits = workflow_resources(self, top)
        tasks = self.tasks(top, root, defaults)
        if tasks is None or name is None:
            return None
        env = _environment(env_values)
        tasks, groups = expand_tasks(self, tasks, params, self.plugin_checks, env)
        for draft, notes in self.duplicates:  # a duplicate id is a problem: its other problems are too
            self.note(draft["id"], notes)
            expand_tasks(self, [TaskSpec(**draft)], params, self.plugin_checks, env)
        return Workflow(name=name, tasks=tuple(tasks), path=path, description=description, params=params,
                        sha256=sha256, groups=groups, provenance=provenance, resources=self.resources,
                        limits=self.limits, secret_params=secret,
                        secrets=secrets, env_file=env_file)

    def env_file(self, node, path: Path) -> tuple[dict, str | None]:
        """`env_file: PATH` -> (KEY -> value, every value secret; the file, resolved)."""
        value = self.value(node)
        if value is None:
            return {}, None
        if not isinstance(value, str) or not value.strip():
            self.problem("'env_file' must be the path of a KEY=VALUE file (relative: to the workflow file)", node)
            return {}, None
        full = (self.env_dir or path.parent) / os.path.expanduser(value)
        values, problems = read_env_file(full)
        for problem in problems:
            if problem.line is None:
                self.problem(f"env_file '{value}': {problem} ({full})", node)
            else:
                self.problem_in(str(full), f"env_file: {problem}", problem.line)
        return values, str(full)

    def secret_values(self, params: dict, secret: tuple, overrides: dict, env_values: dict) -> tuple:
        """What opflow must write as `***`: the secret params' values, the env_file's values
        (and the environment's, for a key the env_file names: the environment wins)."""
        values = []
        for name in secret:
            for text in _leaves(params.get(name)):  # a secret mapping or list: each of its values
                if len(text) < MIN_SECRET_LENGTH:
                    if name in overrides:  # (a default is in the file: no secret to keep)
                        self.problem(f"--param {name}: a secret param's value must be at least {MIN_SECRET_LENGTH} "
                                     f"characters long (a shorter one cannot be masked in the run's record)")
                    continue
                values.append(text)
        for key, value in env_values.items():
            values.append(value)
            if key in os.environ:
                values.append(os.environ[key])
        return tuple(values)

    def provenance(self, node) -> tuple:
        """`provenance: [distribution names]`: each a distribution's name (PEP 508), once."""
        names = self.value(node)
        if names is None:
            return ()
        if not isinstance(names, list):
            self.problem("'provenance' must be a list of distribution names (as pip installs them)", node)
            return ()
        good = []
        for i, name in enumerate(names):
            where = node.value[i] if isinstance(node, yaml.SequenceNode) else node
            if not isinstance(name, str) or not DISTRIBUTION_NAME.fullmatch(name):
                self.problem(f"provenance: {name!r} is not a distribution's name (such as scikit-learn)", where)
            elif name in good:
                self.problem(f"provenance: {name!r} is listed twice", where)
            else:
                good.append(name)
        return tuple(good)

    def required_string(self, items, key, parent, task_id=None):
        if key not in items:
            if id(parent) not in self._bad_merge_ids:  # else the bad merge key is the problem
                self.problem(f"missing required key '{key}'", parent, task_id)
            return None
        node = items[key][1]
        value = self.value(node)
        if not isinstance(value, str) or not value.strip():
            self.problem(f"'{key}' must be a non-empty string", node, task_id)
            return None
        return value

    def defaults(self, top) -> dict:
        if "defaults" not in top:
            return {}
        node = top["defaults"][1]
        if not isinstance(node, yaml.MappingNode):
            self.problem("'defaults' must be a mapping", node)
            return {}
        items = self.mapping(node, "defaults")
        self.unknown_keys(items, DEFAULT_KEYS + FEATURE_DEFAULT_KEYS, "defaults")
        found = {k: self.number_setting(k, v[1], None) for k, v in items.items() if k in DEFAULT_KEYS}
        return {**found, **default_features(self, items)}

    def tasks(self, top, root, defaults) -> list[TaskSpec] | None:
        if "tasks" not in top:
            self.problem("missing required key 'tasks'", root)
            return None
        node = top["tasks"][1]
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.problem("'tasks' must be a non-empty list of tasks", node)
            return None
        drafts = []
        first_line: dict[str, int] = {}
        for item in node.value:
            draft = self.task(item, defaults)
            if draft is None:
                continue
            task_id = draft["id"]
            notes = draft.pop("notes")
            if task_id in first_line:
                self.problem(f"duplicate task id (first defined on line {first_line[task_id]})", item, task_id)
                # Still checked, on its own lines: after the first task's (`_check`), never in its place.
                self.duplicates.append((draft, notes))
                continue
            self.note(task_id, notes)
            first_line[task_id] = draft["line"]
            drafts.append(draft)
        known = list(first_line)
        for draft in drafts + [d for d, _ in self.duplicates]:
            for dep, dep_node in draft.pop("dep_nodes"):
                if dep == draft["id"]:
                    self.problem(f"depends_on '{dep}': a task cannot depend on itself (cycle {dep} -> {dep})", dep_node, dep)
                elif dep not in first_line:
                    close = difflib.get_close_matches(dep, known, n=1)
                    hint = f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(known)
                    self.problem(f"depends_on '{dep}' is not a task id ({hint})", dep_node, draft["id"])
        tasks = [TaskSpec(**d) for d in drafts]
        self.cycles(tasks, set(first_line))
        return tasks

    def task(self, node, defaults) -> dict | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem("each task must be a mapping with 'id' and 'plugin'", node)
            return None
        items = self.mapping(node, "task", self._peek_id(node))
        task_id = None
        if "id" in items:
            raw_id = self.value(items["id"][1])
            if isinstance(raw_id, (int, float)) and not isinstance(raw_id, bool):
                raw_id = None
            if not isinstance(raw_id, str) or not ID_PATTERN.fullmatch(raw_id):
                self.problem(f"task id {self.value(items['id'][1])!r} must match [A-Za-z0-9_.-]+", items["id"][1])
            elif len(raw_id) > MAX_ID_LENGTH:  # ids become file names
                self.problem(f"task id '{raw_id[:40]}...' is {len(raw_id)} characters long; at most {MAX_ID_LENGTH}",
                             items["id"][1])
            elif raw_id in RESERVED_IDS:
                what = "the workflow params" if raw_id == "params" else "what upstream tasks failed (trigger rules)"
                self.problem(f"task id '{raw_id}' is reserved (context['{raw_id}'] holds {what})", items["id"][1])
            else:
                task_id = raw_id
        else:
            self.problem("missing required key 'id'", node)
        self.unknown_keys(items, TASK_KEYS, "task", task_id)
        plugin = self.required_string(items, "plugin", node, task_id)
        if plugin is not None and self.known_plugins is not None and plugin not in self.known_plugins:
            close = difflib.get_close_matches(plugin, sorted(self.known_plugins), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(sorted(self.known_plugins))
            self.problem(f"unknown plugin '{plugin}' ({hint}){self.plugin_hint}", items["plugin"][1], task_id)
        config: dict = {}
        bad_config = False
        if "config" in items:
            self.duplicate_keys(items["config"][1], "config", task_id)
            config = self.value(items["config"][1])
            if config is None:
                config = {}
            elif not isinstance(config, dict):
                self.problem(f"'config' must be a mapping, got {type(config).__name__}", items["config"][1], task_id)
                config = {}
                bad_config = True  # said once: its plugin's schema is not checked against {}
        dep_nodes = []
        if "depends_on" in items:
            deps_node = items["depends_on"][1]
            if isinstance(deps_node, yaml.SequenceNode):
                seen = set()
                for dep_node in deps_node.value:
                    dep = self.value(dep_node)
                    if not isinstance(dep, str):
                        self.problem(f"depends_on entries must be task ids (strings), got {dep!r}", dep_node, task_id)
                    elif dep in seen:
                        self.problem(f"depends_on lists '{dep}' twice", dep_node, task_id)
                    else:
                        seen.add(dep)
                        dep_nodes.append((dep, dep_node))
            elif self.value(deps_node) is not None:
                self.problem("'depends_on' must be a list of task ids, e.g. [ingest]", deps_node, task_id)
        keep_children = False
        if "keep_children" in items:
            keep_children = self.value(items["keep_children"][1])
            if not isinstance(keep_children, bool):
                self.problem(f"'keep_children' must be true or false, got {keep_children!r}"[:200],
                             items["keep_children"][1], task_id)
                keep_children = False
        settings = dict(defaults)
        for key in DEFAULT_KEYS:
            if key in items:
                settings[key] = self.number_setting(key, items[key][1], task_id)
        features = {**task_features(self, items, task_id, defaults),
                    **task_resources(self, items, task_id, self.resources, self.limits)}
        if task_id is None or plugin is None:
            return None
        # What expand_tasks needs to word this task's problems, noted by tasks() under its id.
        notes = {"config_node": None, "plain": True, "bad_config": bad_config,
                 "feature_lines": {k: items[k][1].start_mark.line + 1
                                   for k in ("foreach", "inputs", "matrix", "outputs", "when") if k in items}}
        if "config" in items:
            config_node = notes["config_node"] = items["config"][1]
            source = self.text[config_node.start_mark.index:config_node.end_mark.index]
            # (an alias may bring a ${ from elsewhere)
            notes["plain"] = "${" not in source and "*" not in source
        draft = _draft(task_id, plugin, config, dep_nodes, settings, keep_children, node.start_mark.line + 1, features)
        draft["notes"] = notes
        return draft

    def note(self, task_id: str, notes: dict) -> None:
        """Where a task's config and keys are (`task`'s notes), for the messages of expand_tasks."""
        self.feature_lines[task_id] = notes["feature_lines"]
        if notes["config_node"] is not None:
            self.config_nodes[task_id] = notes["config_node"]
        else:
            self.config_nodes.pop(task_id, None)
        for found, names in ((notes["plain"], self.plain_configs), (notes["bad_config"], self.bad_config)):
            if found:
                names.add(task_id)
            else:
                names.discard(task_id)

    def _peek_id(self, node) -> str | None:
        """The task's id, if it has a usable one, so problems found before it is checked can name it."""
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "id" and isinstance(value_node, yaml.ScalarNode):
                value = self._constructor.construct_document(value_node)
                if isinstance(value, str) and ID_PATTERN.fullmatch(value) and value not in RESERVED_IDS:
                    return value
        return None

    def number_setting(self, key: str, node, task_id):
        value = self.value(node)
        if value is None:
            return None
        if key in ("timeout", "retry_delay") and isinstance(value, str):
            seconds = parse_duration(value)
            if seconds is None:
                self.problem(f"'{key}' must be a duration like 90, 90s, 5m or 1h, got {value!r}"[:200], node, task_id)
                return None
            value = seconds
        if key == "max_memory" and isinstance(value, str):
            parsed = parse_size(value)
            if parsed is None:
                self.problem(f"'max_memory' must be a size like 512MB or 2GB, got {value!r}", node, task_id)
            return parsed
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not math.isfinite(value)):
            self.problem(f"'{key}' must be a number, got {value!r}"[:200], node, task_id)
            return None
        if value > _LIMITS[key]:
            self.problem(f"'{key}' must be at most {_LIMITS[key]:g}, got {str(value)[:40]}", node, task_id)
            return None
        if key == "retries":
            if not isinstance(value, int) or value < 0:
                self.problem(f"'retries' must be a whole number >= 0, got {value!r}", node, task_id)
                return None
        elif key == "retry_delay":
            if value < 0:
                self.problem(f"'retry_delay' must be >= 0 seconds, got {value!r}", node, task_id)
                return None
        elif value <= 0:
            self.problem(f"'{key}' must be > 0, got {value!r}", node, task_id)
            return None
        return int(value) if key == "max_memory" else value

    def cycles(self, tasks: list[TaskSpec], known: set[str]) -> None:
        """Every cycle, found in the same pass as the other problems: over the
        dependencies that name real tasks (a self-dependency is already reported)."""
        from opflow.workflow.plan import find_cycles

        lines = {t.id: t.line for t in tasks}
        graph = {t.id: tuple(d for d in t.depends_on if d in known and d != t.id) for t in tasks}
        for cycle in find_cycles(graph):
            path = " -> ".join([*cycle, cycle[0]])
            self.problem(f"dependency cycle: {path}", task_id=cycle[0], line=lines[cycle[0]])


_TASK_KEY_SET = frozenset(TASK_KEYS)


class _Unsure(Exception):
    """The quick check met a problem: the full check finds and words them all."""


class _QuickChecker(_Checker):
    """`_Checker`'s checks over plain data (workflow/quick_read.py), for a file with no
    problem: the first one raises `_Unsure`. Where it can, it calls the very
    checks of `_Checker` (a plain value is its own `value`), so that the two
    reads accept the same files and build the same `Workflow`."""

    def problem(self, message: str, node=None, task_id: str | None = None, line: int | None = None):
        raise _Unsure

    def problem_in(self, file: str, message: str, line: int | None) -> None:
        raise _Unsure

    def value(self, node):
        return node

    def check_plain(self, document, path: Path, sha256: str, overrides: dict) -> Workflow:
        top = document.root
        if type(top) is not dict or not all(k in TOP_KEYS or k.startswith("x-") for k in top):
            raise _Unsure
        name = top.get("name")
        description = top.get("description")
        params = top.get("params")
        if not isinstance(name, str) or not name.strip() or not isinstance(description, (str, type(None))):
            raise _Unsure
        if not isinstance(params, (dict, type(None))):
            raise _Unsure
        declared, secret = split_declarations(params or {}, lambda name, message: self.problem(message))
        params = merge_params(declared, overrides, self.problem, secret)
        env_values, env_file = self.env_file(top["env_file"], path) if "env_file" in top else ({}, None)
        secrets = self.secret_values(params, secret, overrides, env_values)
        provenance = self.provenance(top["provenance"]) if "provenance" in top else ()
        defaults = {}
        if "defaults" in top:
            given = top["defaults"]
            if type(given) is not dict or not all(k in DEFAULT_KEYS + FEATURE_DEFAULT_KEYS for k in given):
                raise _Unsure
            items = {k: (None, v) for k, v in given.items()}
            found = {k: self.number_setting(k, v, None) for k, v in given.items() if k in DEFAULT_KEYS}
            defaults = {**found, **default_features(self, items)}
        self.resources, self.limits = workflow_resources(self, {k: (None, top[k]) for k in RESOURCE_TOP_KEYS if k in top})
        raw_tasks = top.get("tasks")
        if type(raw_tasks) is not list or not raw_tasks:
            raise _Unsure
        tasks = []
        for i, raw in enumerate(raw_tasks):
            draft = self.plain_task(raw, i, document, defaults)
            del draft["dep_nodes"]
            tasks.append(TaskSpec(**draft))
            raw_tasks[i] = None  # its values live on in the TaskSpec; the dict itself can go
        position = {t.id: i for i, t in enumerate(tasks)}
        if len(position) != len(tasks):
            raise _Unsure  # a duplicate id
        forward = False
        for i, task in enumerate(tasks):
            for dep in task.depends_on:
                at = position.get(dep, i)
                if at == i:
                    raise _Unsure  # no such task, or itself
                forward = forward or at > i
        if forward:  # a task depends on one further down the file: there may be a cycle
            self.cycles(tasks, set(position))
        tasks, groups = expand_tasks(self, tasks, params, self.plugin_checks, _environment(env_values))
        return Workflow(name=name, tasks=tuple(tasks), path=path, description=description or "", params=params,
                        sha256=sha256, groups=groups, provenance=provenance, resources=self.resources,
                        limits=self.limits, secret_params=secret,
                        secrets=secrets, env_file=env_file)

    def plain_task(self, raw, index: int, document, defaults: dict) -> dict:
        """`_Checker.task` for a task read as plain data."""
        if type(raw) is not dict or not raw.keys() <= _TASK_KEY_SET:
            raise _Unsure
        task_id = raw.get("id")
        if (type(task_id) is not str or not ID_PATTERN.fullmatch(task_id) or len(task_id) > MAX_ID_LENGTH
                or task_id in RESERVED_IDS):
            raise _Unsure
        plugin = raw.get("plugin")
        if not isinstance(plugin, str) or not plugin.strip():
            raise _Unsure
        if self.known_plugins is not None and plugin not in self.known_plugins:
            raise _Unsure
        config = raw.get("config")
        if config is None:
            config = {}
        elif type(config) is not dict:
            raise _Unsure
        deps = raw.get("depends_on")
        if deps is None:
            deps = []
        elif type(deps) is not list or not all(type(d) is str for d in deps) or len(set(deps)) != len(deps):
            raise _Unsure
        keep_children = raw.get("keep_children", False)
        if not isinstance(keep_children, bool):
            raise _Unsure
        settings = dict(defaults)
        for key in DEFAULT_KEYS:
            if key in raw:
                settings[key] = self.number_setting(key, raw[key], task_id)
        features = task_features(self, {k: (None, raw[k]) for k in FEATURE_KEYS if k in raw}, task_id, defaults)
        features.update(task_resources(self, {k: (None, raw[k]) for k in RESOURCE_TASK_KEYS if k in raw}, task_id,
                                       self.resources, self.limits))
        if index not in document.configs_to_render:  # (as `task` decides it, from the config's text)
            self.plain_configs.add(task_id)
        return _draft(task_id, plugin, config, [(d, None) for d in deps], settings, keep_children,
                      document.task_lines[index], features)


def _leaves(value) -> list[str]:
    """The texts of a param's value: a string or number itself, each one inside a list or mapping."""
    if isinstance(value, bool) or value is None or value == "":
        return []
    if isinstance(value, (str, int, float)):
        return [str(value)]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [text for item in items for text in _leaves(item)]


def _environment(env_values: dict):
    """What `${env.NAME}` reads: the environment, then the env_file."""
    if not env_values:
        return os.environ
    from collections import ChainMap

    return ChainMap(os.environ, env_values)


def _secret_node(params_node, name: str):
    """The node of `secret:` in the declaration of param `name` (for its line), if there is one."""
    if not isinstance(params_node, yaml.MappingNode):
        return None
    for key_node, value_node in params_node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == name and isinstance(value_node, yaml.MappingNode):
            for inner_key, inner_value in value_node.value:
                if isinstance(inner_key, yaml.ScalarNode) and inner_key.value == "secret":
                    return inner_value
    return None


def _draft(task_id, plugin, config, dep_nodes, settings, keep_children, line, features) -> dict:
    """A checked task's TaskSpec fields (both reads build them here)."""
    return {
        "id": task_id,
        "plugin": plugin,
        "config": config,
        "depends_on": tuple(d for d, _ in dep_nodes),
        "dep_nodes": dep_nodes,
        "retries": settings.get("retries") or 0,
        "retry_delay": float(settings.get("retry_delay") or 0.0),
        "timeout": settings.get("timeout"),
        "max_memory": settings.get("max_memory"),
        "keep_children": keep_children,
        "line": line,
        **features,
    }


# Upper bounds: beyond them a value is a typo, and huge ints overflow float maths.
_LIMITS = {"retries": 1000, "retry_delay": 86400.0, "timeout": 365 * 86400.0, "max_memory": 2.0**60}
