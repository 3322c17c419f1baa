"""Bounds on what a workflow file may ask of opflow, checked before anything is built.

A file that passes `validate` must not hurt the run after it. Three shapes do:
- an alias bomb: anchors whose aliases repeat each other (617 bytes that expand
  to hundreds of millions of values, rendered into run.json and pickled per task);
- nesting deep enough that json, pickle or repr hit Python's recursion limit;
- a task id too long to be a file name (tasks/<id>.json is written after the run).

The walk is over the composed node graph, iterative (a deep file cannot crash
it), and visits each node once: aliases are shared nodes, so sizes are memoised.
"""
from __future__ import annotations

__all__ = ["MAX_DEPTH", "MAX_ALIAS_EXPANSION", "MAX_ID_LENGTH", "MAX_FILE_BYTES", "MAX_WORKERS", "check_node_tree"]

import yaml

#: Nesting deeper than this is refused (json and pickle recurse once per level;
#: Python's default limit is 1000, and a workflow needs a handful).
MAX_DEPTH = 100
#: Values aliases may add on top of the file's own nodes (an anchor reused a few
#: times is fine; 9^9 copies is not).
MAX_ALIAS_EXPANSION = 1_000_000
#: Task ids become file names (tasks/<id>.json, tasks/<id>.log): 255 bytes is the
#: usual limit for a name, and the suffixes and temporary names need room.
MAX_ID_LENGTH = 200
#: Workflow files larger than this are refused before parsing (a 100,000-task
#: file is about 10 MB); the full read (spec.py: line-marked nodes) costs about
#: 70x the file size in memory, the quick read of a valid file about 15x.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Pool size ceiling: each worker is a process; beyond this is a typo.
MAX_WORKERS = 1024


def check_node_tree(root) -> tuple[str, int | None] | None:
    """(message, 1-based line) of the first bound the node graph breaks, or None.

    Walks level by level, repeating a node each time an alias repeats it, so the
    level count is the expanded depth and what is walked twice is what aliases
    add. Both are capped, so a bomb or a recursive anchor (`&a [*a]`, endless)
    costs at most MAX_ALIAS_EXPANSION steps. Breadth first, not depth first: one
    list comprehension per level, fast enough for 100,000-task files.
    """
    level = [root] if isinstance(root, _COLLECTIONS) else []
    seen: set[int] = set()
    repeated = 0
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return (f"values nested more than {MAX_DEPTH} levels deep (or an anchor that contains its own "
                    "alias); a workflow needs a few", level[0].start_mark.line + 1)
        for node in level:
            key = id(node)
            if key in seen:
                repeated += 1 + len(node.value)
                if repeated > MAX_ALIAS_EXPANSION:
                    return (f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} values (an alias bomb?); "
                            "repeat less, or write the values out", node.start_mark.line + 1)
            else:
                seen.add(key)
        level = [kid for node in level for kid in _collection_kids(node)]
    return None


def _collection_kids(node) -> list:
    if type(node) is yaml.SequenceNode:
        return [kid for kid in node.value if type(kid) is not yaml.ScalarNode]
    return [kid for pair in node.value for kid in pair if type(kid) is not yaml.ScalarNode]


_COLLECTIONS = (yaml.SequenceNode, yaml.MappingNode)
