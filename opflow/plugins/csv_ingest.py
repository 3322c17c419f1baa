"""`csv_ingest`: read a CSV file into a pandas DataFrame."""
from __future__ import annotations

from pathlib import Path

from ..errors import PluginError
from ..plugin_base import Plugin


class CsvIngestPlugin(Plugin):
    """Read a CSV file (config 'path') into a pandas DataFrame.

    A relative path is looked for beside the workflow file first, then in the
    current folder; the error names every path looked at.
    """

    name = "csv_ingest"
    reads_params = False  # its cache key needs only its config (params reach it through ${params.X})
    config_schema = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1, "description": "The CSV file (relative: to the workflow file)."},
            "read_csv": {"type": "object", "description": "Options for pandas.read_csv."},
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    def run(self, config: dict, context: dict):
        import pandas as pd  # imported here: only tasks that need pandas pay for it

        raw = config.get("path")
        if not isinstance(raw, str) or not raw:
            raise PluginError("config 'path' is required: the CSV file to read")
        # A relative path is looked for beside the workflow file, then in the current
        # folder (the seed's example names its CSV relative to the project root).
        tried = [self.resolve_path(raw), Path(raw).expanduser().resolve()]
        found = [p for p in tried if p.is_file()]
        if not found:
            where = [str(tried[0])]
            if tried[1] != tried[0].resolve():
                where = [f"{tried[0]} (beside the workflow file)", f"{tried[1]} (in the current folder)"]
            raise PluginError(f"config 'path': no such file {raw!r}; looked for {' and '.join(where)}")
        path = found[0]
        options = config.get("read_csv") or {}
        if not isinstance(options, dict):
            raise PluginError("config 'read_csv' must be a mapping of pandas.read_csv options")
        try:
            return pd.read_csv(path, **options)
        except (ValueError, TypeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise PluginError(f"cannot parse {path} as CSV: {exc}") from exc
