"""`shell`: run a command through the shell."""
from __future__ import annotations

import os
import subprocess

from ..errors import PluginError
from ..plugin_base import Plugin
from ..procs import track_child_group, untrack_child_group

STDERR_TAIL_LINES = 20


class ShellPlugin(Plugin):
    """Run a shell command; fails on a non-zero exit status."""

    name = "shell"
    config_schema = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "minLength": 1, "description": "Run by /bin/sh; ${params.X} values are shell-quoted."},
            "env": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
                    "description": "Extra environment variables."},
            "cwd": {"type": "string", "description": "Working directory (relative: to the workflow file)."},
        },
        "required": ["command"],
        "additionalProperties": False,
    }

    def run(self, config: dict, context: dict) -> dict:
        command = config.get("command")
        if not isinstance(command, str) or not command.strip():
            raise PluginError("config 'command' is required and must be a non-empty string")
        env = dict(os.environ)
        extra_env = config.get("env") or {}
        if not isinstance(extra_env, dict):
            raise PluginError("config 'env' must be a mapping of variable names to values")
        # Params reach shell commands as OPFLOW_PARAM_<KEY> (upper-cased).
        for key, value in (context.get("params") or {}).items():
            env[f"OPFLOW_PARAM_{str(key).upper()}"] = str(value)
        env.update({str(k): str(v) for k, v in extra_env.items()})
        cwd = self.resolve_path(config["cwd"]) if config.get("cwd") else self.workflow_dir
        if not cwd.is_dir():
            raise PluginError(f"config 'cwd': {cwd} is not a directory")
        # A session of its own makes the command and everything it starts one
        # process group, which opflow kills as a whole on timeout or interrupt.
        proc = subprocess.Popen(
            command, shell=True, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        track_child_group(proc.pid)
        try:
            out, err = proc.communicate()
        finally:
            untrack_child_group(proc.pid)
        stdout = out.decode("utf-8", errors="replace")
        stderr = err.decode("utf-8", errors="replace")
        if proc.returncode != 0:
            tail = "\n".join(stderr.rstrip().splitlines()[-STDERR_TAIL_LINES:])
            how = _describe_returncode(proc.returncode)
            raise PluginError(f"command {how}" + (f"; stderr ends with:\n{tail}" if tail else "; stderr was empty"))
        return {"returncode": proc.returncode, "stdout": stdout, "stderr": stderr}


def _describe_returncode(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
