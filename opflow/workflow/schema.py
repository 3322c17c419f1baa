"""`opflow schema`: a JSON Schema (draft 2020-12) of the workflow format, for editors.

Each known plugin's `config_schema` is attached to tasks naming that plugin
(`if plugin == X then config: <its schema>`), with every non-string value also
allowed to be a `${...}` reference (which validate resolves later).
"""
from __future__ import annotations

__all__ = ["workflow_schema"]

import copy
from pathlib import Path

from opflow.words import DURATION_PATTERN, SIZE_PATTERN
from opflow.workflow.expand import TRIGGERS
from opflow.plugins import discover_plugins, plugin_config_schema, worker_dirs

_REFERENCE = {"type": "string", "pattern": r"^\$\{[^}]+\}$", "description": "a ${...} reference, resolved by opflow"}
_DURATION = {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": DURATION_PATTERN}],
             "description": "seconds, or 90s, 5m, 1h"}
_TASK_ID = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$"}
_SIZE = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": SIZE_PATTERN}],
         "description": "bytes, or 512MB, 2GiB"}
_LIMIT_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$"}
_RESOURCES = {
    "type": "object", "additionalProperties": False,
    "description": "the budget: CPUs (the default pool size) and memory that tasks' cpus and memory draw on",
    "properties": {"cpus": {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]},
                   "memory": {"anyOf": [_SIZE, {"const": "auto"}]}},
}
_LIMITS = {
    "type": "object", "description": "named limits: at most max tasks holding one run at once",
    "propertyNames": _LIMIT_NAME,
    "additionalProperties": {"anyOf": [
        {"type": "integer", "minimum": 1},
        {"type": "object", "required": ["max"], "additionalProperties": False,
         "properties": {"max": {"type": "integer", "minimum": 1}, "scope": {"enum": ["run", "machine"]}}}]},
}


def workflow_schema(workflow_dir: Path | None = None) -> dict:
    refs, _ = discover_plugins(worker_dirs(workflow_dir))
    by_plugin = []
    for name in sorted(refs):
        config = plugin_config_schema(refs[name])
        if isinstance(config, dict):
            by_plugin.append({"if": {"properties": {"plugin": {"const": name}}, "required": ["plugin"]},
                              "then": {"properties": {"config": _allow_references(config)}}})
    task = {
        "type": "object",
        "required": ["id", "plugin"],
        "additionalProperties": False,
        "properties": {
            "id": _TASK_ID,
            "plugin": {"type": "string", "examples": sorted(refs)},
            "config": {"type": ["object", "null"]},
            "depends_on": {"type": ["array", "null"], "items": _TASK_ID},
            "retries": {"type": "integer", "minimum": 0},
            "retry_delay": _DURATION,
            "timeout": {"anyOf": [_DURATION, {"type": "null"}]},
            "max_memory": {"type": ["integer", "string"], "description": "bytes, or 512MB, 2GB"},
            "trigger": {"enum": list(TRIGGERS)},
            "cache": {"type": "boolean"},
            "inputs": {"type": ["array", "string"], "items": {"type": "string"}},
            "outputs": {"type": ["array", "string"], "items": {"type": "string", "minLength": 1},
                        "description": "files the task must leave; their sha256 go in its record"},
            "foreach": {"anyOf": [{"type": "array"}, _REFERENCE]},
            "max_items": {"type": "integer", "minimum": 1,
                          "description": "a foreach over an upstream result: at most this many instances"},
            "when": {"type": "string", "description": "run only if this is true: ${params...}, ${tasks.ID.result...}, literals, comparisons, and/or/not"},
            "keep_children": {"type": "boolean", "description": "processes the task starts may outlive it"},
            "tags": {"type": "array", "items": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$"},
                     "description": "names `opflow run --only tag:NAME` selects by"},
            "retry_on": {"type": "array", "description": "retry only these failures: exception type names, exit:N",
                         "items": {"type": "string",
                                   "pattern": r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*|exit:[0-9]{1,3})$"}},
            "matrix": {"type": "object", "minProperties": 1,
                       "description": "one instance per combination: <id>[NAME=value,...]; ${matrix.NAME}",
                       "properties": {"exclude": {"type": "array", "items": {"type": "object"}}},
                       "additionalProperties": {"type": "array", "minItems": 1,
                                                "items": {"type": ["string", "number", "boolean"]}}},
            "cpus": {"type": "integer", "minimum": 1, "description": "pool slots the task takes"},
            "memory": {"anyOf": [_SIZE, {"const": "auto"}],
                       "description": "memory it reserves (and is killed past); auto: 1.25x its last peak RSS"},
            "limit": {"anyOf": [_LIMIT_NAME, {"type": "array", "items": _LIMIT_NAME, "minItems": 1}]},
            "priority": {"type": "integer", "description": "higher starts first (else the critical path)"},
        },
        "allOf": by_plugin,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://opflow.invalid/workflow.schema.json",
        "title": "opflow workflow",
        "type": "object",
        "required": ["name", "tasks"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "description": {"type": "string"},
            "params": {"type": ["object", "null"],
                       "description": "name: default, or name: {default: VALUE, secret: true} (written *** in records)"},
            "env_file": {"type": "string", "minLength": 1,
                         "description": "KEY=VALUE lines for ${env.KEY}, every value secret (relative: to this file)"},
            "defaults": {
                "type": "object",
                "additionalProperties": False,
                "properties": {k: task["properties"][k] for k in ("retries", "retry_delay", "timeout", "max_memory", "cache",
                                                                         "retry_on")},
            },
            "provenance": {"type": "array", "uniqueItems": True,
                           "items": {"type": "string", "pattern": r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"},
                           "description": "distributions whose versions run.json records"},
            "tasks": {"type": "array", "minItems": 1, "items": task},
            "resources": _RESOURCES,
            "limits": _LIMITS,
        },
        "patternProperties": {"^x-": {"description": "a place for YAML anchors, ignored by opflow"}},
    }


def _allow_references(schema):
    """A copy of a config schema where any value may also be a `${...}` reference."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return node
        for key in ("properties",):
            if isinstance(node.get(key), dict):
                node[key] = {k: walk(v) for k, v in node[key].items()}
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                node[key] = walk(node[key])
        types = node.get("type")
        names = [types] if isinstance(types, str) else list(types or [])
        if names and "string" not in names:
            return {"anyOf": [node, _REFERENCE]}
        return node

    return walk(schema)
