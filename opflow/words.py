"""Numbers in words a person reads: plurals and sizes.

Small, but every message goes through here, so "1 tasks" and "209715200 bytes"
never reach a terminal.
"""
from __future__ import annotations

__all__ = ["plural", "format_bytes", "wrap_list"]

import textwrap

_GIB = 1024**3
_MIB = 1024**2
_KIB = 1024


def plural(count: int, word: str, many: str | None = None) -> str:
    """`plural(1, "task")` -> "1 task"; `plural(2, "task")` -> "2 tasks"."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def format_bytes(size: int | None) -> str:
    """A size as a person would write it in a workflow file: 200MB, 2GB, 1.5GB.

    The units are the ones `max_memory` reads (1MB = 1024**2 bytes), so the
    number printed is the number the user wrote.
    """
    if size is None:
        return "?"
    # The largest unit that writes it exactly (1.5GB, 1500MB), else MB rounded.
    for unit, scale in (("GB", _GIB), ("MB", _MIB), ("KB", _KIB)):
        if size >= scale and (size * 10) % scale == 0:
            return f"{size / scale:g}{unit}"
    if size >= _MIB:
        return f"{size / _MIB:.1f}MB"
    return f"{size}B" if size < _KIB else f"{size / _KIB:.1f}KB"


def wrap_list(prefix: str, items: list[str], width: int) -> list[str]:
    """`prefix` then the items comma-separated, wrapped to `width` with a hanging indent."""
    return textwrap.wrap(", ".join(items), width=max(40, width), initial_indent=prefix,
                         subsequent_indent=" " * len(prefix), break_on_hyphens=False, break_long_words=False)
