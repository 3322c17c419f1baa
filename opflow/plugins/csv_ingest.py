"""`csv_ingest`: read a CSV file into a pandas DataFrame."""
from __future__ import annotations

from pathlib import Path

from opflow.errors import ConfigError, PluginError
from opflow.plugin_base import Plugin


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
            raise ConfigError("config 'path' is required: the CSV file to read")
        # A relative path is looked for beside the workflow file, then in the current
        # folder, then (its file name alone) beside the workflow file: the seed's
        # example names its CSV relative to the project root (examples/sample_data.csv),
        # so it runs both where it is and copied to the project root.
        tried = [(self.resolve_path(raw), "beside the workflow file"),
                 (Path(raw).expanduser().resolve(), "in the current folder")]
        if not Path(raw).is_absolute() and Path(raw).parent != Path("."):
            tried.append((self.workflow_dir / Path(raw).name, "its name beside the workflow file"))
        unique, seen = [], set()
        for place, label in tried:  # the same place twice is looked at (and named) once
            if place.resolve() not in seen:
                seen.add(place.resolve())
                unique.append((place, label))
        found = [place for place, _ in unique if place.is_file()]
        if not found:
            where = [f"{place} ({label})" for place, label in unique] if len(unique) > 1 else [str(unique[0][0])]
            raise ConfigError(f"config 'path': no such file {raw!r}; looked for {' and '.join(where)}")
        path = found[0]
        options = config.get("read_csv") or {}
        if not isinstance(options, dict):
            raise ConfigError("config 'read_csv' must be a mapping of pandas.read_csv options")
        try:
            return pd.read_csv(path, **options)
        except (ValueError, TypeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise PluginError(f"cannot parse {path} as CSV: {exc}") from exc
