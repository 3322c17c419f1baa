"""A validator for the JSON Schema keywords plugin configs use, and a refusal for the rest.

`opflow schema` hands editors each plugin's `config_schema` whole, and editors speak the
full language: a keyword opflow skipped would pass a config the editor rejects (or the
other way round). So every validation keyword below is checked as JSON Schema (2020-12)
says, and a schema using one that is not here is a problem of the task that names the
plugin ("uses 'if', which opflow does not check"), never silently ignored.

Checked: `type`, `enum`, `const`; `minimum`, `maximum`, `exclusiveMinimum`,
`exclusiveMaximum`, `multipleOf`; `minLength`, `maxLength`, `pattern`; `properties`,
`required`, `additionalProperties`, `patternProperties`, `propertyNames`,
`minProperties`, `maxProperties`, `dependentRequired`; `items`, `prefixItems`,
`minItems`, `maxItems`, `uniqueItems`, `contains`; `anyOf`, `oneOf`, `allOf`, `not`;
`$ref` to `#/...` inside the same schema (`$defs`, `definitions`). Annotations
(`description`, `default`, `title`, `examples`, `format`, ...) are not checks.
No dependency: the tests compare every keyword's verdicts with jsonschema's.
"""
from __future__ import annotations

__all__ = ["check_config", "CHECKED", "ANNOTATIONS"]

import difflib
import re

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}
_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
          "object": "a mapping", "array": "a list", "null": "null"}

CHECKED = frozenset({
    "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "properties", "required", "additionalProperties", "patternProperties",
    "propertyNames", "minProperties", "maxProperties", "dependentRequired", "items", "prefixItems", "minItems",
    "maxItems", "uniqueItems", "contains", "anyOf", "oneOf", "allOf", "not", "$ref",
})
#: Keywords that say something about a value without constraining it (and schema bookkeeping).
ANNOTATIONS = frozenset({
    "description", "default", "title", "examples", "format", "deprecated", "readOnly", "writeOnly",
    "$comment", "$schema", "$id", "$defs", "definitions", "contentMediaType", "contentEncoding",
})


def check_config(schema: dict, value, path: tuple = ()) -> list[tuple[tuple, str]]:
    """[(key path, message)] for every way `value` breaks `schema`; [] when it fits."""
    problems: list[tuple[tuple, str]] = []
    _Checker(schema).check(schema, value, path, problems)
    return problems


def _where(path: tuple) -> str:
    text = "config"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _number(value) -> bool:
    return _TYPES["number"](value)


class _Checker:
    def __init__(self, root: dict):
        self.root = root

    def resolve(self, ref: str):
        if not ref.startswith("#"):
            return None
        node = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def fits(self, schema, value, path) -> bool:
        found: list = []
        self.check(schema, value, path, found)
        return not found

    def check(self, schema, value, path, problems) -> None:
        if schema is True or not isinstance(schema, (dict, bool)):
            return
        if schema is False:
            problems.append((path, f"{_where(path)}: no value is allowed here"))
            return
        unknown = sorted(k for k in schema if k not in CHECKED and k not in ANNOTATIONS)
        if unknown:
            problems.append((path, f"{_where(path)}: the plugin's config_schema uses {', '.join(map(repr, unknown))}, "
                                   f"which opflow does not check (it would pass what an editor refuses)"))
            return
        where = _where(path)
        if "$ref" in schema:
            target = self.resolve(schema["$ref"])
            if target is None:
                problems.append((path, f"{where}: the plugin's config_schema refers to {schema['$ref']!r}, "
                                       f"which is not in it"))
                return
            self.check(target, value, path, problems)
        for keyword, combine in (("allOf", all), ("anyOf", any)):
            if keyword in schema and not combine(self.fits(s, value, path) for s in schema[keyword]):
                if keyword == "allOf":
                    for option in schema["allOf"]:
                        self.check(option, value, path, problems)
                else:
                    problems.append((path, f"{where}: {value!r} fits none of the allowed forms"[:300]))
        if "oneOf" in schema:
            fitting = sum(self.fits(s, value, path) for s in schema["oneOf"])
            if fitting != 1:
                what = "none" if not fitting else f"{fitting}, not exactly one,"
                problems.append((path, f"{where}: {value!r} fits {what} of the allowed forms"[:300]))
        if "not" in schema and self.fits(schema["not"], value, path):
            problems.append((path, f"{where}: {value!r} is a form that is not allowed"[:300]))
        types = schema.get("type")
        if types is not None:
            names = [types] if isinstance(types, str) else list(types)
            if not any(_TYPES.get(name, lambda v: False)(value) for name in names):
                want = " or ".join(_NAMES.get(n, n) for n in names)
                problems.append((path, f"{where} must be {want}, got {type(value).__name__} {value!r}"[:300]))
                return
        if "enum" in schema and not any(_same(value, choice) for choice in schema["enum"]):
            choices = ", ".join(map(repr, schema["enum"]))
            problems.append((path, f"{where} must be one of {choices}, got {value!r}"[:300]))
        if "const" in schema and not _same(value, schema["const"]):
            problems.append((path, f"{where} must be {schema['const']!r}, got {value!r}"[:300]))
        if _number(value):
            self._number(schema, value, where, path, problems)
        if isinstance(value, str):
            self._string(schema, value, where, path, problems)
        if isinstance(value, dict):
            self._object(schema, value, where, path, problems)
        if isinstance(value, list):
            self._array(schema, value, where, path, problems)

    def _number(self, schema, value, where, path, problems) -> None:
        bounds = (("minimum", lambda v, b: v >= b, ">="), ("maximum", lambda v, b: v <= b, "<="),
                  ("exclusiveMinimum", lambda v, b: v > b, ">"), ("exclusiveMaximum", lambda v, b: v < b, "<"))
        for keyword, holds, sign in bounds:
            if keyword in schema and _number(schema[keyword]) and not holds(value, schema[keyword]):
                problems.append((path, f"{where} must be {sign} {schema[keyword]}, got {value!r}"))
        step = schema.get("multipleOf")
        if _number(step) and step > 0:
            quotient = value / step
            if quotient != int(quotient):  # as jsonschema divides (floats: 0.3 / 0.1 is not 3)
                problems.append((path, f"{where} must be a multiple of {step}, got {value!r}"))

    def _string(self, schema, value, where, path, problems) -> None:
        length = len(value)
        if "minLength" in schema and length < schema["minLength"]:
            problems.append((path, f"{where} must not be empty" if schema["minLength"] == 1
                             else f"{where} must have at least {schema['minLength']} characters"))
        if "maxLength" in schema and length > schema["maxLength"]:
            problems.append((path, f"{where} must have at most {schema['maxLength']} characters, got {length}"))
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            problems.append((path, f"{where} must match {schema['pattern']!r}, got {value!r}"[:300]))

    def _object(self, schema, value, where, path, problems) -> None:
        properties = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        extra = schema.get("additionalProperties", True)
        meant = set()  # required keys an unknown key is a typo of: one message, not two
        for key, item in value.items():
            matched = [p for p in patterns if re.search(p, str(key))]
            for pattern in matched:
                self.check(patterns[pattern], item, path + (key,), problems)
            if key in properties:
                self.check(properties[key], item, path + (key,), problems)
            elif matched:
                continue
            elif extra is False:
                close = difflib.get_close_matches(str(key), list(properties), n=1)
                meant.update(close)
                hint = f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(properties)
                problems.append((path + (key,), f"{where}: unknown key '{key}' ({hint})"))
            elif isinstance(extra, dict):
                self.check(extra, item, path + (key,), problems)
        for key in schema.get("required", ()):
            if key not in value and key not in meant:
                problems.append((path, f"{where}: missing required key '{key}'"))
        if "propertyNames" in schema:
            for key in value:
                self.check(schema["propertyNames"], key, path + (key,), problems)
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            problems.append((path, f"{where} must have at least {schema['minProperties']} keys"))
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            problems.append((path, f"{where} must have at most {schema['maxProperties']} keys"))
        for key, needs in (schema.get("dependentRequired") or {}).items():
            missing = [n for n in needs if key in value and n not in value]
            if missing:
                problems.append((path, f"{where}: '{key}' needs {', '.join(map(repr, missing))} too"))

    def _array(self, schema, value, where, path, problems) -> None:
        prefix = schema.get("prefixItems") or []
        for i, (item, item_schema) in enumerate(zip(value, prefix)):
            self.check(item_schema, item, path + (i,), problems)
        if "items" in schema:
            for i, item in enumerate(value[len(prefix):], start=len(prefix)):
                self.check(schema["items"], item, path + (i,), problems)
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append((path, f"{where} must have at least {schema['minItems']} items, got {len(value)}"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append((path, f"{where} must have at most {schema['maxItems']} items, got {len(value)}"))
        if schema.get("uniqueItems") and any(_same(a, b) for i, a in enumerate(value) for b in value[i + 1:]):
            problems.append((path, f"{where} must not repeat an item"))
        if "contains" in schema and not any(self.fits(schema["contains"], item, path) for item in value):
            problems.append((path, f"{where} must hold an item that fits {schema['contains']!r}"[:300]))


def _same(a, b) -> bool:
    """Equal as JSON values: 1 and 1.0 are, true and 1 are not; mappings and lists item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _number(a) and _number(b):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
