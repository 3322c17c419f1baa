"""Declared params and `--param` overrides: every key declared, every value of the declared type.

A param is declared by giving it a default under `params:`. An override must
name a declared param ("did you mean"), and its value takes the type of the
default: `--param n=5` is an int where the default is an int, the text itself
where the default is a string (`--param tag=007` stays "007"), a list or
mapping in YAML flow style where the default is one (`--param files=[a.csv,b.csv]`).
An int is accepted for a float default. A default of `null` accepts any value
(read as a YAML scalar): that is how a file says "any type".

A param written `{default: VALUE, secret: true}` is secret: its value is written
`***` in everything opflow writes (opflow/masking.py), and a value given on the
command line is never echoed in a message.
"""
from __future__ import annotations

__all__ = ["CliValue", "parse_cli_params", "merge_params", "split_declarations", "SECRET_KEYS"]

import difflib
from typing import Any, Callable, Iterable

import yaml

from opflow.errors import UsageError


class CliValue(str):
    """A `--param` value as typed on the command line, not yet given its declared type."""


def parse_cli_params(items: Iterable[str]) -> dict[str, CliValue]:
    overrides: dict[str, CliValue] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = CliValue(value)
    return overrides


#: The keys of a param declared as a mapping: `{default: VALUE, secret: BOOL}`.
SECRET_KEYS = ("default", "secret")


def split_declarations(written: dict, problem: Callable[[str, str], None]) -> tuple[dict, tuple[str, ...]]:
    """`params:` as written -> (name -> default, the names declared secret).

    A mapping with a `secret` key declares a param (`default`, `secret`); any other
    value is the param's default. `problem(name, message)`."""
    defaults: dict = {}
    secret = []
    for name, value in written.items():
        if isinstance(value, dict) and "secret" in value:
            for key in value:
                if key not in SECRET_KEYS:
                    close = difflib.get_close_matches(str(key), SECRET_KEYS, n=1)
                    hint = f"did you mean '{close[0]}'?" if close else "declare it as {default: VALUE, secret: true}"
                    problem(name, f"param '{name}': unknown key '{key}' ({hint})")
            flag = value["secret"]
            if not isinstance(flag, bool):
                problem(name, f"param '{name}': 'secret' must be true or false, got {flag!r}"[:200])
            elif flag:
                secret.append(name)
            defaults[name] = value.get("default")
        else:
            defaults[name] = value
    return defaults, tuple(secret)


def merge_params(declared: dict, overrides: dict, problem: Callable[[str], None], secret: tuple = ()) -> dict:
    """The params as used: the declared defaults with each override checked and typed.
    The value of a `secret` param is never shown in a problem."""
    params = dict(declared)
    for key, value in overrides.items():
        if key in secret:
            shown = f"--param {key}=***" if isinstance(value, CliValue) else f"param '{key}'"
        else:
            shown = f"--param {key}={value}" if isinstance(value, CliValue) else f"param '{key}'"
        if key not in declared:
            close = difflib.get_close_matches(key, [str(k) for k in declared], n=1)
            if close:
                hint = f"did you mean '{close[0]}'?"
            elif declared:
                hint = "declared: " + ", ".join(map(str, declared))
            else:
                hint = "it declares none; declare it under 'params:' with a default"
            problem(f"{shown}: the workflow declares no param '{key}' ({hint})")
            continue
        typed, error = _typed(value, declared[key])
        if error and key in secret:
            error = error.split(", got ")[0]  # (the rest names the value)
        if error:
            problem(f"{shown}: {error}")
        else:
            params[key] = typed
    return params


def _typed(value: Any, default: Any) -> tuple[Any, str | None]:
    raw = isinstance(value, CliValue)
    if raw and isinstance(default, str):
        return str(value), None
    if raw:
        try:
            value = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            value = str(value)
    if default is None:
        return value, None
    want = _kind(default)
    got = _kind(value)
    if want == got or (want == "float" and got == "int"):
        return (float(value) if want == "float" else value), None
    shown_default = repr(default) if not isinstance(default, (dict, list)) else want
    return None, f"expected {_ARTICLE.get(want, want)} like the declared default ({shown_default}), got {got} {value!r}"[:300]


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    for kind, types in (("int", int), ("float", float), ("str", str), ("list", list), ("mapping", dict)):
        if isinstance(value, types):
            return kind
    return "null" if value is None else type(value).__name__


_ARTICLE = {"bool": "a bool (true/false)", "int": "an int", "float": "a number", "str": "a string",
            "list": "a list ([a, b])", "mapping": "a mapping ({k: v})"}
