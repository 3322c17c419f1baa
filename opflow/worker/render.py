"""JSON rendering of task results for the audit trail: never a silent drop.

The record shows what a person needs to check a result: plain data as itself,
a DataFrame as its shape, columns, dtypes and a few rows, anything else as its
type and repr. NaN and infinities become null (JSON has no NaN).
"""
from __future__ import annotations

__all__ = ["render", "HEAD_ROWS"]

import math
from typing import Any

HEAD_ROWS = 5
MAX_ITEMS = 1000
MAX_TEXT = 100_000


def render(value: Any, _depth: int = 0) -> Any:
    # Subclasses (an IntEnum, a str Enum from the user's module) become their
    # base type: the rendering must not need the user's code to be unpickled.
    if value is None or isinstance(value, bool):
        return bool(value) if value is not None else None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        value = str.__str__(value)
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + f"... [{len(value) - MAX_TEXT} more characters]"
    if _depth > 20:
        return {"type": type(value).__name__, "repr": _short_repr(value)}
    module = type(value).__module__ or ""
    if module.startswith("pandas"):
        return _render_pandas(value, _depth)
    if module == "numpy":
        return _render_numpy(value, _depth)
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k): render(v, _depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["..."] = f"{len(items) - MAX_ITEMS} more items"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        out = [render(v, _depth + 1) for v in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            out.append(f"... {len(items) - MAX_ITEMS} more items")
        return out
    if isinstance(value, (bytes, bytearray)):
        return {"type": type(value).__name__, "size": len(value)}
    return {"type": f"{module}.{type(value).__qualname__}", "repr": _short_repr(value)}


def _render_pandas(value, depth):
    import pandas as pd

    if value is pd.NA or value is pd.NaT:
        return None  # pandas' missing values, as NaN is
    if isinstance(value, pd.DataFrame):
        head = value.head(HEAD_ROWS)
        return {
            "type": "DataFrame",
            "rows": int(value.shape[0]),
            "columns": [str(c) for c in value.columns],
            "dtypes": {str(c): str(t) for c, t in value.dtypes.items()},
            "head": [
                {str(k): render(_scalar(v), depth + 1) for k, v in row.items()}
                for row in head.to_dict(orient="records")
            ],
        }
    if isinstance(value, pd.Series):
        return {
            "type": "Series",
            "name": None if value.name is None else str(value.name),
            "rows": int(value.shape[0]),
            "dtype": str(value.dtype),
            "head": [render(_scalar(v), depth + 1) for v in value.head(HEAD_ROWS).tolist()],
        }
    return {"type": f"pandas.{type(value).__name__}", "repr": _short_repr(value)}


def _render_numpy(value, depth):
    if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
        return {"type": "ndarray", "shape": list(value.shape), "dtype": str(value.dtype),
                "head": render(value.ravel()[:HEAD_ROWS].tolist(), depth + 1)}
    if hasattr(value, "item"):
        return render(value.item(), depth + 1)
    return {"type": f"numpy.{type(value).__name__}", "repr": _short_repr(value)}


def _scalar(value):
    """A pandas/numpy scalar as a plain Python value where it has one."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    if hasattr(value, "isoformat") and value == value:  # NaT is not equal to itself: render() makes it null
        return value.isoformat()
    return value


def _short_repr(value, limit: int = 500) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not fail the task's record
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
    return text if len(text) <= limit else text[:limit] + "..."
