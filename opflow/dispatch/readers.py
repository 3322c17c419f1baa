"""Which held results no remaining task reads: when to free their shared memory.

A task may read any of its transitive upstream results, so a result held in
shared memory (`Outcome.shared`) is needed until every task downstream of its
producer has finished for good (succeeded, or failed with no retry left).
Only held results are tracked, so a run without any costs nothing: a finished
task is checked against each held result (a set lookup each), never walked up.
Tasks that never run (skipped, cancelled) are settled at the end of the run,
when the backend frees everything anyway.
"""
from __future__ import annotations

__all__ = ["ReaderCount"]

from typing import Callable


class ReaderCount:
    def __init__(self, children: dict[str, list[str]], is_final: Callable[[str], bool]):
        self._children = children
        self._is_final = is_final
        self._waiting: dict[str, set[str]] = {}  # held result -> its readers not yet finished

    def held(self, task_id: str) -> list[str]:
        """`task_id`'s result is held: returns [task_id] if no reader is left already."""
        readers, stack = set(), list(self._children[task_id])
        while stack:
            child = stack.pop()
            if child not in readers:
                readers.add(child)
                stack.extend(self._children[child])
        waiting = {t for t in readers if not self._is_final(t)}
        if not waiting:
            return [task_id]
        self._waiting[task_id] = waiting
        return []

    def finished(self, task_id: str) -> list[str]:
        """`task_id` is final: the held results it was the last reader of."""
        if not self._waiting:
            return []
        done = []
        for producer, waiting in self._waiting.items():
            waiting.discard(task_id)
            if not waiting:
                done.append(producer)
        for producer in done:
            del self._waiting[producer]
        return done
