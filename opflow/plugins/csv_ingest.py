"""`csv_ingest`: read a CSV file into a pandas DataFrame."""
from __future__ import annotations

from pathlib import Path

from ..errors import PluginError
from ..plugin_base import Plugin


class CsvIngestPlugin(Plugin):
    """Read a CSV file (config 'path') into a pandas DataFrame."""

    name = "csv_ingest"

    def run(self, config: dict, context: dict):
        import pandas as pd  # imported here: only tasks that need pandas pay for it

        raw = config.get("path")
        if not isinstance(raw, str) or not raw:
            raise PluginError("config 'path' is required: the CSV file to read")
        path = self.resolve_path(raw)
        if not path.is_file():
            # The seed's example names its CSV relative to the project root
            # (examples/sample_data.csv): accept that from the current folder, and a
            # file of that name beside the workflow file, so the example runs both
            # where it is and copied to the project root.
            for fallback in (Path(raw).expanduser().resolve(), self.workflow_dir / Path(raw).name):
                if fallback.is_file():
                    path = fallback
                    break
            else:
                raise PluginError(f"config 'path': no such file {path}")
        options = config.get("read_csv") or {}
        if not isinstance(options, dict):
            raise PluginError("config 'read_csv' must be a mapping of pandas.read_csv options")
        try:
            return pd.read_csv(path, **options)
        except (ValueError, TypeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise PluginError(f"cannot parse {path} as CSV: {exc}") from exc
