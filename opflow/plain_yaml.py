"""YAML text -> plain data, with no node tree: the quick read of a workflow file.

The full read (spec.py) composes PyYAML nodes so that every problem can name its
line; a node with its two marks costs ~700 bytes, ~6 KB a task: 600 MB for a
100,000-task file. This reads the parser's events one at a time instead and keeps
only values, plus what a valid workflow needs of the marks: each task's line, and
which configs have a `${` or a `*` in their text (spec.py renders only those).

It reads only what it can read exactly as the full read would, and says
`Unreadable` for the rest (syntax errors, anchors and aliases, merge keys, tags,
keys that are not strings, duplicate keys, deep nesting): the full read then
reads the file again and words the problems.

    events ─ read_plain ─▶ PlainDocument(root, task_lines, configs_to_render)
"""
from __future__ import annotations

__all__ = ["PlainDocument", "Unreadable", "read_plain"]

from dataclasses import dataclass

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from .input_limits import MAX_DEPTH

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # as spec.py: the same events
_NO_KEY = object()


class Unreadable(Exception):
    """Something only the full read can read (or word as a problem)."""


@dataclass
class PlainDocument:
    root: object
    #: 1-based line of each item of the top-level `tasks` list (None: not a mapping)
    task_lines: list
    #: indices of the items whose `config` text has `${` (or `*`: an alias may bring one)
    configs_to_render: set


def read_plain(text: str) -> PlainDocument:
    """The document's value (SafeLoader semantics) and marks, or raise `Unreadable`."""
    loader = _Loader(text)
    try:
        return _read(loader, text)
    except yaml.YAMLError:
        raise Unreadable from None
    finally:
        loader.dispose()


def _read(loader, text: str) -> PlainDocument:
    get_event = loader.get_event
    scalar_value = _ScalarValues()
    stack: list = []  # [container, pending key (mappings), what it is: 1 tasks list, 2 a task]
    root = _NO_KEY
    task_lines: list = []
    configs_to_render: set = set()
    config_start = None  # offset where the current task's config value began
    event = get_event()
    if type(event) is not yaml.StreamStartEvent or type(get_event()) is not yaml.DocumentStartEvent:
        raise Unreadable  # an empty file
    while True:
        event = get_event()
        kind = type(event)
        if kind is yaml.ScalarEvent:
            if event.anchor is not None or event.tag is not None:
                raise Unreadable
            if event.implicit[0]:
                value = scalar_value.plain(event.value)
            else:
                value = scalar_value.quoted(event.value)
            ends = event.end_mark.index
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            if event.anchor is not None or event.tag is not None or len(stack) >= MAX_DEPTH:
                raise Unreadable
            role = 0
            if stack:
                frame = stack[-1]
                if frame[1] is _NO_KEY and type(frame[0]) is dict:
                    raise Unreadable  # a collection as a key
                if frame[2] == 1:
                    task_lines.append(event.start_mark.line + 1 if kind is yaml.MappingStartEvent else None)
                    role = 2
                elif frame[2] == 2 and frame[1] == "config":
                    config_start = event.start_mark.index
                elif len(stack) == 1 and frame[1] == "tasks" and kind is yaml.SequenceStartEvent:
                    role = 1
            stack.append([{} if kind is yaml.MappingStartEvent else [], _NO_KEY, role])
            continue
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            value = stack.pop()[0]
            ends = event.end_mark.index
        elif kind is yaml.DocumentEndEvent:
            if type(get_event()) is not yaml.StreamEndEvent:
                raise Unreadable  # a second document
            break
        else:  # an alias
            raise Unreadable
        if not stack:
            root = value
            continue
        frame = stack[-1]
        container = frame[0]
        if type(container) is list:
            if frame[2] == 1 and kind is yaml.ScalarEvent:
                task_lines.append(None)
            container.append(value)
        elif frame[1] is _NO_KEY:
            if type(value) is not str or value in container:
                raise Unreadable  # a key that is no string (`yes`, `<<` and `1` are not), or twice
            frame[1] = value
        else:
            key = frame[1]
            container[key] = value
            frame[1] = _NO_KEY
            if frame[2] == 2 and key == "config":
                start = event.start_mark.index if kind is yaml.ScalarEvent else config_start
                source = text[start:ends]
                if "${" in source or "*" in source:
                    configs_to_render.add(len(task_lines) - 1)
    if root is _NO_KEY:
        raise Unreadable
    return PlainDocument(root, task_lines, configs_to_render)


class _ScalarValues:
    """Scalars as SafeLoader builds them. Each distinct text is built once and
    shared: a 100,000-task file repeats its plugin names and config keys, which
    then cost one string each (values that are all immutable)."""

    def __init__(self):
        self._plain: dict = {}
        self._quoted: dict = {}
        self._resolver = Resolver()
        self._constructor = SafeConstructor()

    def quoted(self, text: str) -> str:
        # Quoted and block scalars are strings (an untagged one resolves to str).
        return self._quoted.setdefault(text, text)

    def plain(self, text: str):
        try:
            return self._plain[text]
        except KeyError:
            pass
        tag = self._resolver.resolve(yaml.ScalarNode, text, (True, False))
        construct = SafeConstructor.yaml_constructors.get(tag)
        if construct is None:  # `<<` (merge) and `=` (value) have none
            raise Unreadable
        try:
            value = construct(self._constructor, yaml.ScalarNode(tag, text))
        except Exception:  # noqa: BLE001 - a value the full read will word (or fail on) itself
            raise Unreadable from None
        self._plain[text] = value
        return value
