"""A small validator for the part of JSON Schema plugin configs use.

Keywords: `type` (a name or a list), `properties`, `required`,
`additionalProperties` (bool or a schema), `items`, `enum`, `anyOf`, `minimum`,
`minLength`. Other keywords (`description`, `default`, `$comment`...) are
ignored. Small on purpose: opflow needs these and no dependency (`opflow schema`
emits the same schemas for editors, which speak the full language).
"""
from __future__ import annotations

__all__ = ["check_config"]

import difflib

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}
_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
          "object": "a mapping", "array": "a list", "null": "null"}


def check_config(schema: dict, value, path: tuple = ()) -> list[tuple[tuple, str]]:
    """[(key path, message)] for every way `value` breaks `schema`; [] when it fits."""
    problems: list[tuple[tuple, str]] = []
    _check(schema, value, path, problems)
    return problems


def _where(path: tuple) -> str:
    if not path:
        return "config"
    text = "config"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _check(schema, value, path, problems) -> None:
    if not isinstance(schema, dict):
        return
    if "anyOf" in schema:
        if not any(not check_config(option, value, path) for option in schema["anyOf"]):
            problems.append((path, f"{_where(path)}: {value!r} fits none of the allowed forms"[:300]))
        return
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES.get(name, lambda v: True)(value) for name in names):
            want = " or ".join(_NAMES.get(n, n) for n in names)
            problems.append((path, f"{_where(path)} must be {want}, got {type(value).__name__} {value!r}"[:300]))
            return
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(map(repr, schema["enum"]))
        problems.append((path, f"{_where(path)} must be one of {choices}, got {value!r}"[:300]))
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        problems.append((path, f"{_where(path)} must be >= {schema['minimum']}, got {value!r}"))
    if "minLength" in schema and isinstance(value, str) and len(value) < schema["minLength"]:
        problems.append((path, f"{_where(path)} must not be empty" if schema["minLength"] == 1
                         else f"{_where(path)} must have at least {schema['minLength']} characters"))
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        meant = set()  # required keys an unknown key is a typo of: one message, not two
        for key, item in value.items():
            if key in properties:
                _check(properties[key], item, path + (key,), problems)
            elif extra is False:
                close = difflib.get_close_matches(str(key), list(properties), n=1)
                meant.update(close)
                hint = f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(properties)
                problems.append((path + (key,), f"{_where(path)}: unknown key '{key}' ({hint})"))
            elif isinstance(extra, dict):
                _check(extra, item, path + (key,), problems)
        for key in schema.get("required", ()):
            if key not in value and key not in meant:
                problems.append((path, f"{_where(path)}: missing required key '{key}'"))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _check(schema["items"], item, path + (i,), problems)
