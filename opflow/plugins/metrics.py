"""`metrics`: summary statistics of numeric columns, as pandas `describe()` gives them."""
from __future__ import annotations

from opflow.errors import ConfigError, PluginError
from opflow.plugin_base import Plugin

STATS = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")


class MetricsPlugin(Plugin):
    """Describe numeric columns of an upstream DataFrame (count, mean, std, quartiles)."""

    name = "metrics"
    reads_params = False  # its cache key needs only its config (params reach it through ${params.X})
    config_schema = {
        "type": "object",
        "properties": {
            "numeric_columns": {"type": ["array", "string", "null"], "items": {"type": "string"},
                                "description": "Columns to describe (default: every numeric one)."},
            "source": {"type": "string", "description": "The upstream task whose DataFrame to describe."},
        },
        "additionalProperties": False,
    }

    @classmethod
    def check_task(cls, config: dict, depends_on: tuple, workflow_dir=None) -> list[str]:
        if "source" not in config and len(depends_on) != 1:
            return [f"config 'source' is required when the task has {len(depends_on)} upstream tasks "
                    f"({', '.join(depends_on) or 'none'}): which one's DataFrame?"]
        return []

    def run(self, config: dict, context: dict) -> dict:
        import pandas as pd

        frame = self._source_frame(config, context, pd)
        columns = config.get("numeric_columns")
        if columns is None:
            columns = [c for c in frame.columns if _is_numeric(frame[c], pd)]
        elif isinstance(columns, str):
            columns = [columns]
        elif not isinstance(columns, list):
            raise ConfigError("config 'numeric_columns' must be a list of column names")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise PluginError(f"column(s) not found: {', '.join(map(str, missing))} (columns: {', '.join(map(str, frame.columns))})")
        not_numeric = [c for c in columns if not _is_numeric(frame[c], pd)]
        if not_numeric:
            kinds = ", ".join(f"{c} ({frame[c].dtype})" for c in not_numeric)
            raise PluginError(f"column(s) not numeric: {kinds}")
        result = {}
        for column in columns:
            described = frame[column].describe()
            result[str(column)] = {stat: float(described[stat]) for stat in STATS}
        return result

    def _source_frame(self, config, context, pd):
        upstream = [k for k in context if k != "params"]
        source = config.get("source")
        if source is None:
            direct = list(self.depends_on) or upstream
            if len(direct) != 1:
                raise PluginError(
                    f"config 'source' is required when the task has {len(direct)} upstream tasks "
                    f"({', '.join(direct) or 'none'})"
                )
            source = direct[0]
        if source not in context:
            raise ConfigError(f"config 'source': {source!r} is not an upstream task of this task")
        frame = context[source]
        if not isinstance(frame, pd.DataFrame):
            raise PluginError(f"the result of {source!r} is a {type(frame).__name__}, not a DataFrame")
        return frame


def _is_numeric(series, pd) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
