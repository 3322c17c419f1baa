"""Numbers in words a person reads and writes: plurals, sizes and durations.

Small, but every message goes through here, so "1 tasks" and "209715200 bytes"
never reach a terminal.
"""
from __future__ import annotations

__all__ = ["plural", "format_bytes", "wrap_list", "parse_duration", "DURATION_PATTERN", "parse_size", "SIZE_PATTERN"]

import math
import re
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


# Durations as people write them: `90`, `90s`, `1.5m`, `5m`, `1h`, `2d` -> seconds.
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: The same rule as a regular expression (for the JSON Schema of the workflow format).
DURATION_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*[smhd]?\s*$"


def parse_duration(value) -> float | None:
    """Seconds, or None when `value` is not a duration (a number or a string like '5m')."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*", value)
    if not match:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


# Sizes as people write them: `512MB`, `2GiB`, `1.5G`, `300M` -> bytes (1MB = 1024**2, as format_bytes writes).
_SIZE_UNITS = {"": 1, "B": 1, "K": _KIB, "KB": _KIB, "KIB": _KIB, "M": _MIB, "MB": _MIB, "MIB": _MIB,
               "G": _GIB, "GB": _GIB, "GIB": _GIB}
#: The same rule as a regular expression (for the JSON Schema of the workflow format).
SIZE_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*([KkMmGg]([Ii]?[Bb])?|[Bb])?\s*$"


def parse_size(text: str) -> int | None:
    """Bytes, or None when `text` is not a size (`max_memory`, `memory`, `--memory`)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _SIZE_UNITS:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
