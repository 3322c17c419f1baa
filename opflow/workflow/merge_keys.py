"""YAML merge keys (`<<: *defaults`) on the composed node tree, line marks kept.

The workflow checker reads nodes, not constructed values, so that every problem
can name its line; PyYAML resolves merge keys only while constructing. This
applies them to the nodes instead, with the same rules (the mapping's own keys
win; among several merged mappings, the first that has a key wins), so a merged
key keeps the line where its anchor defined it.
"""
from __future__ import annotations

__all__ = ["MERGE_TAG", "flatten_merges"]

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"


def flatten_merges(root) -> dict[int, list[tuple[str, yaml.Node]]]:
    """Replace every `<<` entry under `root` by the pairs it brings, in place.

    Returns the problems of merge keys that name no mapping: id of the mapping
    that holds one -> [(message, node)]. (The keys such a mapping then lacks are
    not news: the bad merge key is the one problem to report.)
    """
    broken: dict[int, list[tuple[str, yaml.Node]]] = {}
    done: set[int] = set()

    def walk(node) -> None:
        if id(node) in done:  # an alias of a node already flattened (or being flattened)
            return
        done.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                walk(value_node)  # children first: a merged mapping is flat before it is copied
            _flatten(node)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)

    def _flatten(node: yaml.MappingNode) -> None:
        if not any(key.tag == MERGE_TAG for key, _ in node.value):
            return
        own = [(k, v) for k, v in node.value if k.tag != MERGE_TAG]
        taken = {_key(k) for k, _ in own}
        merged = []
        for key_node, value_node in node.value:
            if key_node.tag != MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            if not sources or not all(isinstance(s, yaml.MappingNode) for s in sources):
                broken.setdefault(id(node), []).append((
                    "merge key '<<' needs a mapping or a list of mappings, such as <<: *defaults "
                    "(an alias of an anchored mapping)", value_node))
                continue
            for source in sources:
                for pair in source.value:
                    if _key(pair[0]) not in taken:
                        taken.add(_key(pair[0]))
                        merged.append(pair)
        node.value = merged + own

    walk(root)
    return broken


def _key(node) -> object:
    return ("scalar", node.value) if isinstance(node, yaml.ScalarNode) else ("node", id(node))
