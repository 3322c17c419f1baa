"""How a failure reads to a person: a headline and the last lines that explain it.

Used by the console (the FAILED line), summary.txt and `opflow show`, so a
failure can be acted on without opening a file: a shell command's end of stderr,
a Python task's end of traceback, or else the end of what the task wrote.
"""
from __future__ import annotations

__all__ = ["headline", "detail_lines", "add_log_tail", "DETAIL_LINES"]

import os
import re

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
    command's stderr tail), else the end of the traceback, else of the log.

    The traceback's end starts at a frame boundary (a frame's `File` line with
    its source, never the source alone), and there is none at all when no
    frame is the user's (only opflow's own, or Python's frozen import machinery):
    what is left would only repeat the headline."""
    if not error:
        return []
    message_rest = str(error.get("message") or "").splitlines()[1:]
    if message_rest:
        return message_rest[-limit:]
    blocks = _user_blocks(str(error.get("traceback") or ""))
    log_lines = [line for line in str(error.get("log_tail") or "").splitlines() if line.strip()]
    if blocks and error.get("type") != "SystemExit":
        if _is_headline(blocks[-1][0], str(error.get("type") or "")):
            blocks.pop()  # the last line repeats the headline
        tail: list[str] = []
        for block in reversed(blocks):  # the frames nearest the raise, whole
            if len(tail) + len(block) > limit:
                break
            tail[:0] = block
        if not tail and blocks:  # one frame longer than the limit: its start, the File line first
            tail = blocks[-1][:limit]
        return tail
    return log_lines[-limit:]


_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # opflow/, above rundir/


def _user_blocks(traceback_text: str) -> list[list[str]]:
    """A traceback as blocks never cut apart: each frame (its `File` line and the lines
    under it) one block, each other line its own. opflow's own frames, `<frozen ...>`
    frames and the ^^^ markers are left out; [] when no frame is left (none is the user's).
    An exception group's frames (`  |   File ...`) are frames too."""
    blocks: list[list[str]] = []
    frames = 0
    in_frame = skipping = False
    lead = ""  # what comes before `  File` on the current frame's line ("", or an exception group's "  | ")
    for line in traceback_text.splitlines():
        match = _FRAME_LINE.match(line)
        if match:
            lead, where = match.group(1), match.group(2)
            skipping = where.startswith(_OWN_DIR + os.sep) or where.startswith("<frozen ")
            in_frame = not skipping
            if in_frame:
                blocks.append([line])
                frames += 1
            continue
        if (in_frame or skipping) and line.startswith(lead + "    "):  # the frame's source, its markers
            if in_frame and not set(line.strip(" |")) <= set("^~"):
                blocks[-1].append(line)
            continue
        in_frame = skipping = False
        if line.strip(" |"):
            blocks.append([line])
    return blocks if frames else []


_FRAME_LINE = re.compile(r'([ |]*?)  File "([^"]*)"')


def _is_headline(line: str, type_name: str) -> bool:
    """Whether a traceback's line is its exception line: `ValueError: ...`,
    `opflow.errors.PluginError: ...` (the headline says `PluginError`)."""
    name = line.split(":", 1)[0].strip()
    return bool(type_name) and (name == type_name or name.endswith("." + type_name))


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
