"""`${...}` references in config values: which are opflow's, and their values.

The rule (README, "Templating"): a reference is opflow's when its name has a dot
(`${params.n}`, `${params.db.host}`, `${env.HOME}`, `${env.TMP:-/tmp}`,
`${item.name}`), or is exactly `${item}` or `${index}`. Everything else
(`${HOME}`, `${1}`, `${x:-y}`, `${#a}`) is left as it is, for the shell. A shell
variable never has a dot in its name, so `${param.x}` or `${parms.x}` cannot be
meant for the shell: it is a typo in one of opflow's, and an error. `$${` is a
literal `${`.

A string that is exactly one reference takes the value's own type (`${params.n}`
is an int); elsewhere the value is written into the string (JSON for anything
but a string). Substituted into a shell command, each value is shell-quoted: a
param holding `; rm -rf ~` is one argument, never code.
"""
from __future__ import annotations

__all__ = ["Scope", "render_value", "NAMESPACES"]

import copy
import difflib
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from opflow.workflow.shell_quotes import undone_quoting_at

NAMESPACES = ("params", "env", "item", "matrix")
_BARE = ("item", "index")
_TOKEN = re.compile(r"\$\$\{|\$\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_MISSING = object()


@dataclass
class Scope:
    """What references can name. `item`/`index` exist only in a foreach instance."""

    params: Mapping[str, Any]
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    item: Any = _MISSING
    index: Any = _MISSING
    matrix: Any = _MISSING  # a matrix instance's {NAME: value}


class TemplateError(Exception):
    pass


def render_value(value, scope: Scope, *, quote_paths: tuple = (), path: tuple = ()) -> tuple[Any, list]:
    """`value` with every opflow reference replaced; and [(path, message)] problems.

    `quote_paths`: key paths (tuples) whose strings are shell commands.
    """
    problems: list = []
    rendered = _walk(value, scope, quote_paths, path, problems)
    return rendered, problems


def _walk(value, scope, quote_paths, path, problems):
    if isinstance(value, str):
        try:
            return _render_string(value, scope, quote=path in quote_paths)
        except TemplateError as exc:
            problems.append((path, str(exc)))
            return value
    # A container comes back as the same object when nothing in it changed (most
    # configs have no reference: no copy, and the caller can tell).
    if isinstance(value, dict):
        items = {k: _walk(v, scope, quote_paths, path + (k,), problems) for k, v in value.items()}
        return value if all(items[k] is v for k, v in value.items()) else items
    if isinstance(value, list):
        items = [_walk(v, scope, quote_paths, path + (i,), problems) for i, v in enumerate(value)]
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def _render_string(text: str, scope: Scope, quote: bool):
    if "${" not in text:
        return text
    whole = _TOKEN.fullmatch(text)
    if whole and whole.group(0) != "$${":
        found = _resolve(whole.group(1), scope)
        if found is not _MISSING:
            value = copy.deepcopy(found)
            return shlex.quote(_as_text(value)) if quote else value  # exactly one reference keeps its type
    out = []
    last = 0
    ours = []  # (position, reference) of each of opflow's references
    for match in _TOKEN.finditer(text):
        out.append(text[last:match.start()])
        last = match.end()
        if match.group(0) == "$${":
            out.append("${")
            continue
        value = _resolve(match.group(1), scope)
        if value is _MISSING:  # the shell's: leave it
            out.append(match.group(0))
        else:
            ours.append((match.start(), match.group(0)))
            piece = _as_text(value)
            out.append(shlex.quote(piece) if quote else piece)
    out.append(text[last:])
    if quote and ours:
        _refuse_undone_quoting(text, ours)
    return "".join(out)


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
        hint = f"did you mean '${{{close[0]}.{rest}}}'?" if close else "opflow knows ${params.NAME}, ${env.NAME}, ${item}, ${index}, ${matrix.NAME}"
        raise TemplateError(f"unknown reference '${{{inner}}}' ({hint})")
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
        if scope.item is _MISSING:
            raise TemplateError(f"'${{{inner}}}' is only defined in a task with 'foreach'")
        return _dig(scope.item, segments, "item", inner)
    return _dig(scope.params, segments, "params", inner)


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
