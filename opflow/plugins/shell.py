"""`shell`: run a command through the shell."""
from __future__ import annotations

import errno
import os
import selectors
import signal
import subprocess
import time

from opflow.errors import CommandFailed, ConfigError, PluginError
from opflow.plugin_base import Plugin

STDERR_TAIL_LINES = 20
KEEP_BYTES = 4 * 1024 * 1024  # of each stream, in the result; the task's log keeps all of it
TAIL_BYTES = 16384  # of stderr, for the error message of a failure
#: With keep_children, how long output is still read after the command exits
#: (a kept background process may hold the pipes open for good).
DRAIN_SECONDS = 0.5
#: A param longer than this as text is not exported as $OPFLOW_PARAM_<KEY>: Linux refuses an
#: environment string over 128 KiB (every command failed), and each of a foreach's thousands
#: of commands copied the whole value. Reference it as ${params.KEY} where a command needs it.
EXPORT_MAX = 16 * 1024


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
        # The worker's side (psutil, ctypes) where a command runs: `validate` and
        # the coordinator import this class only for its schema and checks.
        from opflow.procs import track_child_group, untrack_child_group
        from opflow.reaper import keeping_children

        command = config.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ConfigError("config 'command' is required and must be a non-empty string")
        extra_env = config.get("env") or {}
        if not isinstance(extra_env, dict):
            raise ConfigError("config 'env' must be a mapping of variable names to values")
        # Params reach shell commands as OPFLOW_PARAM_<KEY> (upper-cased), up to EXPORT_MAX each;
        # what the task may know of itself as OPFLOW_TASK_ID, OPFLOW_ATTEMPT, OPFLOW_RUN_DIR (contract v3).
        exported = {**_exported_params(context.get("params") or {}), **_identity(self, context)}
        env = dict(os.environ)
        env.update(exported)
        env.update({str(k): str(v) for k, v in extra_env.items()})
        cwd = self.resolve_path(config["cwd"]) if config.get("cwd") else self.workflow_dir
        if not cwd.is_dir():
            raise ConfigError(f"config 'cwd': {cwd} is not a directory")
        # A session of its own makes the command and everything it starts one
        # process group, which opflow kills as a whole on timeout or interrupt.
        try:
            proc = subprocess.Popen(
                command, shell=True, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )
        except OSError as exc:
            if exc.errno != errno.E2BIG:
                raise
            raise ConfigError(f"the command ({len(command)} characters) and its environment are longer than the "
                              f"system takes (Linux: 128 KiB a string, about 2 MB in all); pass large values "
                              f"through a file") from None
        track_child_group(proc.pid)
        sink = self.log_sink
        out, err = _Kept(), _Kept()
        try:
            # Each pipe is copied to the task's log as it comes, and only a bounded
            # part kept in memory, whatever the command writes.
            _communicate(proc, keeping_children(), out, err, sink)
        finally:
            untrack_child_group(proc.pid)
        if proc.returncode != 0:
            tail = "\n".join(err.tail_text().rstrip().splitlines()[-STDERR_TAIL_LINES:])
            how = _describe_returncode(proc.returncode)
            raise CommandFailed(f"command {how}" + (f"; stderr ends with:\n{tail}" if tail else "; stderr was empty"),
                                proc.returncode)
        result = {"returncode": proc.returncode, "stdout": out.text(), "stderr": err.text()}
        truncated = [name for name, kept in (("stdout", out), ("stderr", err)) if kept.truncated]
        if truncated:
            result["truncated"] = truncated  # the result keeps KEEP_BYTES of each; the log has everything
        return result


class _Kept:
    """The first KEEP_BYTES of a stream, and its last TAIL_BYTES."""

    def __init__(self):
        self.head = bytearray()
        self.last = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = KEEP_BYTES - len(self.head)
        if room > 0:
            self.head += chunk[:room]
        if len(chunk) > room:
            self.truncated = True
        self.last += chunk
        if len(self.last) > 2 * TAIL_BYTES:
            del self.last[:-TAIL_BYTES]

    def text(self) -> str:
        return self.head.decode("utf-8", errors="replace")

    def tail_text(self) -> str:
        return bytes(self.last[-TAIL_BYTES:]).decode("utf-8", errors="replace")


def _communicate(proc: subprocess.Popen, keep_children: bool, out: _Kept, err: _Kept, sink) -> None:
    """Read the command's output until it exits; then end what it left behind.

    Not `proc.communicate()`: that reads until every writer of the pipes is gone,
    so a background process the command started (`daemon &`) would hold the task
    until it ends. Once the command exits, what it left running is killed (its
    process group; in a pool worker every descendant, daemons included), unless
    the task keeps its children: then output is read for DRAIN_SECONDS more.
    """
    kept = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    selector = selectors.DefaultSelector()
    for stream in (proc.stdout, proc.stderr):
        selector.register(stream, selectors.EVENT_READ)
    exited_at = None
    try:
        while selector.get_map():
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
                if not keep_children:
                    _kill_leftovers(proc.pid)
            if exited_at is not None and keep_children and time.monotonic() - exited_at > DRAIN_SECONDS:
                break
            for key, _ in selector.select(timeout=0.05):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    kept[key.fd].add(chunk)
                    if sink is not None:
                        sink.write(chunk)
                else:
                    selector.unregister(key.fileobj)
    finally:
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
    proc.wait()
    if exited_at is None and not keep_children:  # the pipes closed first; the command has exited now
        _kill_leftovers(proc.pid)


def _kill_leftovers(pgid: int) -> None:
    from opflow.reaper import is_subreaper, kill_leftovers

    try:
        os.killpg(pgid, signal.SIGKILL)  # the command's own group: `sleep 100 &` and the like
    except (ProcessLookupError, PermissionError):
        pass
    if is_subreaper():  # a pool worker runs one task: every descendant is this task's (setsid daemons too)
        kill_leftovers()


def _describe_returncode(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _identity(plugin: Plugin, context) -> dict[str, str]:
    """OPFLOW_TASK_ID, OPFLOW_ATTEMPT (1 for the first) and OPFLOW_RUN_DIR (where the run keeps one),
    from the context's attributes (worker/context.py); a plain dict context (a test's) gives the id alone."""
    task_id = getattr(context, "task_id", None) or getattr(plugin, "task_id", None)
    names = {"OPFLOW_ATTEMPT": str(getattr(context, "attempt", 1) or 1)}
    if task_id is not None:
        names["OPFLOW_TASK_ID"] = str(task_id)
    run_dir = getattr(context, "run_dir", None)
    if run_dir is not None:
        names["OPFLOW_RUN_DIR"] = str(run_dir)
    return names


def _exported_params(params: dict) -> dict[str, str]:
    """OPFLOW_PARAM_<KEY> -> the value as text, for each param up to EXPORT_MAX characters."""
    exported = {}
    for key, value in params.items():
        if isinstance(value, (list, tuple, dict)) and len(value) > EXPORT_MAX // 2:
            continue  # longer than EXPORT_MAX as text whatever its items: not worth writing out
        text = str(value)
        if len(text) <= EXPORT_MAX:
            exported[f"OPFLOW_PARAM_{str(key).upper()}"] = text
    return exported
