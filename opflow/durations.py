"""Durations as people write them: `90`, `90s`, `1.5m`, `5m`, `1h`, `2d` -> seconds."""
from __future__ import annotations

__all__ = ["parse_duration", "DURATION_PATTERN"]

import math
import re

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
