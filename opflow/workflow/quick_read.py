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

from opflow.workflow.limits import MAX_DEPTH

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
    # Locals: this loop runs once per event, ~11 times per task.
    known_plain, plain, quoted = scalar_value.plain_values, scalar_value.plain, scalar_value.quoted_values.setdefault
    Scalar, MappingStart, SequenceStart = yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent
    MappingEnd, SequenceEnd = yaml.MappingEndEvent, yaml.SequenceEndEvent
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
        if kind is Scalar:
            if event.anchor is not None or event.tag is not None:
                raise Unreadable
            value = event.value
            if event.implicit[0]:  # plain: resolved as SafeLoader resolves it
                found = known_plain.get(value, _NO_KEY)
                value = plain(value) if found is _NO_KEY else found
            else:  # quoted or block: a string
                value = quoted(value, value)
        elif kind is MappingStart or kind is SequenceStart:
            if event.anchor is not None or event.tag is not None or len(stack) >= MAX_DEPTH:
                raise Unreadable
            role = 0
            if stack:
                frame = stack[-1]
                if frame[1] is _NO_KEY and type(frame[0]) is dict:
                    raise Unreadable  # a collection as a key
                if frame[2] == 1:
                    task_lines.append(event.start_mark.line + 1 if kind is MappingStart else None)
                    role = 2
                elif frame[2] == 2 and frame[1] == "config":
                    config_start = event.start_mark.index
                elif len(stack) == 1 and frame[1] == "tasks" and kind is SequenceStart:
                    role = 1
            stack.append([{} if kind is MappingStart else [], _NO_KEY, role])
            continue
        elif kind is MappingEnd or kind is SequenceEnd:
            value = stack.pop()[0]
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
            if frame[2] == 1 and kind is Scalar:
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
                start = event.start_mark.index if kind is Scalar else config_start
                source = text[start:event.end_mark.index]
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
        self.plain_values: dict = {}  # text -> value
        self.quoted_values: dict = {}  # quoted and block scalars: strings (untagged, they resolve to str)
        self._resolver = Resolver()
        self._constructor = SafeConstructor()

    def plain(self, text: str):
        """The value of a plain scalar not met before."""
        tag = self._resolver.resolve(yaml.ScalarNode, text, (True, False))
        construct = SafeConstructor.yaml_constructors.get(tag)
        if construct is None:  # `<<` (merge) and `=` (value) have none
            raise Unreadable
        try:
            value = construct(self._constructor, yaml.ScalarNode(tag, text))
        except Exception:  # noqa: BLE001 - a value the full read will word (or fail on) itself
            raise Unreadable from None
        self.plain_values[text] = value
        return value
