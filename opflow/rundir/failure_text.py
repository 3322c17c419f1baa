"""How a failure reads to a person: a headline and the last lines that explain it.

Used by the console (the FAILED line), summary.txt and `opflow show`, so a
failure can be acted on without opening a file: a shell command's end of stderr,
a Python task's end of traceback, or else the end of what the task wrote.
"""
from __future__ import annotations

__all__ = ["headline", "detail_lines", "add_log_tail", "DETAIL_LINES"]

import os

from opflow.rundir.task_logs import LOG_TAIL_LINES, read_tail

DETAIL_LINES = 10  # lines shown under a failure's headline


def headline(error: dict | None) -> str:
    if not error:
        return ""
    message = str(error.get("message") or "")
    first = message.splitlines()[0] if message else ""
    return f"{error.get('type')}: {first}"


def detail_lines(error: dict | None, limit: int = DETAIL_LINES) -> list[str]:
    """The lines under the headline: the rest of a multi-line message (a shell
    command's stderr tail), else the end of the traceback, else of the log."""
    if not error:
        return []
    message_rest = str(error.get("message") or "").splitlines()[1:]
    if message_rest:
        return message_rest[-limit:]
    traceback_lines = _user_frames(str(error.get("traceback") or ""))
    log_lines = [line for line in str(error.get("log_tail") or "").splitlines() if line.strip()]
    if traceback_lines and error.get("type") != "SystemExit":
        # The frames nearest the raise; the last line repeats the headline.
        tail = traceback_lines[-limit - 1:]
        if tail and tail[-1].startswith(f"{error.get('type')}"):
            tail = tail[:-1]
        return tail[-limit:]
    return log_lines[-limit:]


_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # opflow/, above rundir/


def _user_frames(traceback_text: str) -> list[str]:
    """A traceback without opflow's own frames and without the ^^^ markers."""
    kept, skipping = [], False
    for line in traceback_text.splitlines():
        if line.startswith('  File "'):
            skipping = line[len('  File "'):].startswith(_OWN_DIR + os.sep)
        elif not line.startswith("  "):
            skipping = False
        if skipping or not line.strip() or set(line.strip()) <= set("^~"):
            continue
        kept.append(line)
    return kept


def add_log_tail(error: dict | None, log_path: str | None) -> None:
    """A failure the worker could not describe itself (killed on timeout, its
    process died): take the end of its log from the file."""
    if not error or "log_tail" in error or not log_path or not os.path.exists(log_path):
        return
    try:
        error["log_tail"] = read_tail(log_path, LOG_TAIL_LINES, since=_last_attempt_start(log_path))
    except OSError:
        pass


def _last_attempt_start(log_path: str) -> int:
    """Offset just after the last attempt header, so the tail is this attempt's."""
    with open(log_path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        begin = max(0, size - 65536)
        handle.seek(begin)
        data = handle.read()
    at = data.rfind(b"=== attempt ")
    if at < 0:
        return 0
    end = data.find(b"\n", at)
    return begin + (end + 1 if end >= 0 else len(data))
