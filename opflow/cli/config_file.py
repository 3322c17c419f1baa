"""`opflow run`'s config file: defaults for its options, kept beside the workflow.

Where: `--config PATH`, else `opflow.toml` beside the workflow file, else the
`[tool.opflow]` table of the `pyproject.toml` beside it (one without that table is
not a config file). `--no-config` reads none. Keys are `run`'s long option names
without the dashes (`workers`, `log-dir`, `keep-going`, `param`); a value is what the
option takes (`keep-going = true`, `param = ["n=5"]` or a table `param = {n = 5}`).
A relative path in the file is taken beside the file, not in the current folder.

Precedence: the command line, then the environment (OPFLOW_WORKERS, ...), then the
file, then the built-in default. The file only fills what neither of the first
two gave, so this module is asked only about options at their default.

TOML is read with `tomllib` (Python 3.11+), or `tomli` where it is installed on 3.10;
with neither, a config file is an error saying so, and `--no-config` runs without it.
"""
from __future__ import annotations

__all__ = ["find_config", "read_config", "CONFIG_NAME"]

import difflib
from pathlib import Path

import click

from opflow.errors import UsageError

CONFIG_NAME = "opflow.toml"
PYPROJECT = "pyproject.toml"


def _toml():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            return None
    return tomllib


def find_config(workflow_file: Path) -> Path | None:
    """The config file beside `workflow_file`, or None."""
    folder = workflow_file.resolve().parent
    if (folder / CONFIG_NAME).is_file():
        return folder / CONFIG_NAME
    pyproject = folder / PYPROJECT
    # A pyproject.toml is a config file only when it has [tool.opflow]: a cheap text check
    # first, so a project without one never needs a TOML reader.
    if pyproject.is_file() and "tool.opflow" in pyproject.read_text(encoding="utf-8", errors="replace"):
        return pyproject
    return None


def _table(path: Path) -> dict:
    toml = _toml()
    if toml is None:
        raise UsageError(f"{path}: reading a config file needs Python 3.11, or `pip install tomli` on 3.10 "
                         f"(or run with --no-config)")
    try:
        with open(path, "rb") as file:
            document = toml.load(file)
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror or exc}") from None
    except toml.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    if path.name == PYPROJECT:
        table = document.get("tool", {}).get("opflow", {})
        if not isinstance(table, dict):
            raise UsageError(f"{path}: [tool.opflow] must be a table")
        return table
    return document


def read_config(path: Path, ctx: click.Context, wanted: set[str]) -> dict:
    """{parameter name: value} from the config file at `path`, for the parameters named
    in `wanted` (those left at their default); every bad key or value at once."""
    table = _table(path)
    options = {}
    for param in ctx.command.params:
        if isinstance(param, click.Option):
            long_names = [o for o in param.opts if o.startswith("--")]
            if long_names and param.name not in ("config", "no_config"):
                options[long_names[0][2:]] = param
    where = f"{path}" + (" [tool.opflow]" if path.name == PYPROJECT else "")
    problems, values = [], {}
    for key, value in table.items():
        param = options.get(key)
        if param is None:
            close = difflib.get_close_matches(key, list(options), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(options))})"
            problems.append(f"{where}: unknown key '{key}'{hint}")
            continue
        if param.multiple and isinstance(value, dict):  # param = {n = 5}: KEY=VALUE pairs
            value = [f"{k}={_scalar(v)}" for k, v in value.items()]
        elif param.multiple and not isinstance(value, list):
            value = [value]
        try:
            converted = param.type_cast_value(ctx, value)
        except click.BadParameter as exc:
            problems.append(f"{where}: {key} = {value!r}: {exc.message}")
            continue
        if isinstance(converted, Path) and not converted.is_absolute():
            converted = path.parent / converted
        if param.name in wanted:
            values[param.name] = converted
    if problems:
        raise UsageError("\n".join(problems))
    return values


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
