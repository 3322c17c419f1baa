"""Plugin config schemas: opflow's verdicts are jsonschema's, keyword by keyword; a keyword it
does not check is refused, never ignored."""
from __future__ import annotations

import pytest

from helpers import run_cli, write

from opflow.workflow.config_schema import ANNOTATIONS, CHECKED, check_config

jsonschema = pytest.importorskip("jsonschema")

#: (schema, values): each value is judged by both validators; every keyword opflow checks has
#: at least one value that passes and one that fails.
CASES = [
    ({"type": "integer"}, [1, 1.0, 1.5, True, "1"]),
    ({"type": ["string", "null"]}, ["x", None, 3]),
    ({"enum": [1, "a", None]}, [1, 1.0, True, "a", "b", None]),
    ({"const": {"k": [1, 2]}}, [{"k": [1, 2]}, {"k": [2, 1]}, {"k": [1, 2], "j": 0}]),
    ({"minimum": 2, "maximum": 5}, [1, 2, 5, 6, "9"]),
    ({"exclusiveMinimum": 2, "exclusiveMaximum": 5}, [2, 3, 4.5, 5]),
    ({"multipleOf": 0.5}, [1, 1.5, 1.2, "x"]),
    ({"minLength": 2, "maxLength": 3}, ["a", "ab", "abc", "abcd", 12345]),
    ({"pattern": "^[a-z]+:[a-z_]+$"}, ["mod:fn", "stub.spin", "Mod:fn", 3]),
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
      "additionalProperties": False}, [{"a": 1}, {}, {"a": "x"}, {"a": 1, "b": 2}]),
    ({"patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": False},
     [{"x_a": 1}, {"x_a": "no"}, {"y": 1}]),
    ({"propertyNames": {"maxLength": 3}}, [{"abc": 1}, {"abcd": 1}]),
    ({"minProperties": 1, "maxProperties": 2}, [{}, {"a": 1}, {"a": 1, "b": 2, "c": 3}]),
    ({"dependentRequired": {"user": ["password"]}}, [{"user": "u", "password": "p"}, {"user": "u"}, {}]),
    ({"items": {"type": "string"}, "minItems": 1, "maxItems": 2}, [[], ["a"], ["a", 1], ["a", "b", "c"]]),
    ({"prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False}, [[1, "a"], [1], ["a", 1], [1, "a", 2]]),
    ({"uniqueItems": True}, [[1, 2], [1, 1], [1, 1.0], [[1], [1]], [True, 1]]),
    ({"contains": {"const": "x"}}, [["a", "x"], ["a"], []]),
    ({"anyOf": [{"type": "string"}, {"minimum": 3}]}, ["a", 5, 1]),
    ({"oneOf": [{"type": "integer"}, {"minimum": 3}]}, [1, 2.5, 5, "s"]),
    ({"allOf": [{"minimum": 1}, {"maximum": 3}]}, [0, 2, 4]),
    ({"not": {"type": "null"}}, [None, 0]),
    ({"$defs": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
      "properties": {"port": {"$ref": "#/$defs/port"}}}, [{"port": 80}, {"port": 0}, {"port": "80"}]),
    ({"type": "array", "items": {"$ref": "#"}, "maxItems": 1}, [[], [[]], [[[], []]], [[], []]]),
]


@pytest.mark.parametrize("schema, values", CASES, ids=[",".join(sorted(s)) for s, _ in CASES])
def test_every_verdict_is_jsonschemas(schema, values):
    validator = jsonschema.Draft202012Validator(schema)
    for value in values:
        ours = check_config(schema, value)
        assert (not ours) == validator.is_valid(value), (value, ours)


def test_the_cases_cover_every_keyword_opflow_checks():
    used = set()

    def walk(node):
        if isinstance(node, dict):
            used.update(k for k in node if k in CHECKED)
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    for schema, _ in CASES:
        walk(schema)
    assert used == CHECKED


@pytest.mark.parametrize("keyword", ["if", "dependentSchemas", "unevaluatedProperties", "$dynamicRef", "maximun"])
def test_a_keyword_opflow_does_not_check_is_a_problem_not_ignored(keyword):
    problems = check_config({"type": "object", "properties": {"n": {keyword: {}, "type": "integer"}}}, {"n": 1})
    assert problems and f"'{keyword}'" in problems[0][1] and "does not check" in problems[0][1]
    assert keyword not in ANNOTATIONS


PLUGIN = '''
from opflow import Plugin


class Sized(Plugin):
    """Takes a size."""

    name = "sized"
    config_schema = {"type": "object", "properties": {"size": {"type": "integer", "maximum": 10},
                                                      "label": {"type": "string", "pattern": "^[a-z]+$"}},
                     "additionalProperties": False}

    def run(self, config, context):
        return config["size"]
'''


def test_validate_refuses_a_config_the_schema_refuses_at_its_line(tmp_path):
    write(tmp_path / "workers", "sized.py", PLUGIN)
    flow = write(tmp_path, "flow.yaml", """
        name: sized
        tasks:
          - {id: ok, plugin: sized, config: {size: 10, label: fine}}
          - {id: big, plugin: sized, config: {size: 11}}
          - {id: caps, plugin: sized, config: {size: 1, label: Fine}}
    """)
    done = run_cli("validate", str(flow), cwd=tmp_path)
    assert done.returncode == 2
    assert "flow.yaml:4: task 'big': config.size must be <= 10, got 11" in done.stderr
    assert "flow.yaml:5: task 'caps': config.label must match '^[a-z]+$', got 'Fine'" in done.stderr
    assert "task 'ok'" not in done.stderr
