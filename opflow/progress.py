"""The console reporter: what a person (or cron's mail) sees while a run goes.

On a terminal: finished tasks scroll by as lines, with one status line redrawn
below them (what runs now, how many are done). Elsewhere (cron, pipes): plain
timestamped lines, no colour codes, no redraws. `quiet`: failures only.
"""
from __future__ import annotations

__all__ = ["ConsoleProgress"]

import os
import time
from typing import TextIO

from .events import Reporter
from .words import plural

_COLOURS = {"succeeded": "32", "failed": "31", "skipped": "33", "cancelled": "33", "retrying": "35"}


class ConsoleProgress(Reporter):
    def __init__(self, stream: TextIO, *, tty: bool, quiet: bool = False):
        self.stream = stream
        self.tty = tty
        self.quiet = quiet
        self._running: dict[str, float] = {}
        self._total = 0
        self._done = 0
        self._failed = 0
        self._status_shown = False
        self._closed_stream = False
        self._warnings: list[str] = []

    def handle(self, event: dict) -> None:
        if self._closed_stream:
            return
        try:
            self._handle(event)
        except BrokenPipeError:
            # The reader went away (`opflow run ... | head`): stop printing, keep running.
            self._closed_stream = True
            try:
                self.stream = open(os.devnull, "w")
            except OSError:
                pass

    def _handle(self, event: dict) -> None:
        kind = event["event"]
        if kind == "warning":
            # Said before the run starts; shown under its banner, where a reader looks.
            self._warnings.append(event["message"])
        elif kind == "run_started":
            self._total = len(event["tasks"])
            self._line(f"run '{event['workflow']}': {plural(self._total, 'task')}, "
                       f"{plural(event['workers'], 'worker')} ({event['executor']})",
                       important=False)
            for message in self._warnings:
                self._line(f"warning: {message}", status="retrying", important=True)
        elif kind == "task_started":
            self._running[event["task_id"]] = time.monotonic()
            if not self.tty:
                attempt = f" (attempt {event['attempt']})" if event["attempt"] > 1 else ""
                self._line(f"start     {event['task_id']}{attempt}", important=False)
        elif kind == "task_retrying":
            self._running.pop(event["task_id"], None)
            error = event.get("error") or {}
            when = f"in {event['delay_s']:.1f}s" if event["delay_s"] >= 0.05 else "now"
            self._line(f"retrying  {event['task_id']} {when} after attempt {event['attempt']}: "
                       f"{error.get('type')}: {_first_line(error.get('message'))}", status="retrying", important=True)
        elif kind == "task_finished":
            record = event["record"]
            self._running.pop(record["id"], None)
            self._done += 1
            status = record["status"]
            if status == "succeeded":
                took = f"  {record['duration_s']:.2f}s" if record.get("duration_s") is not None else ""
                note = "  (reused)" if record.get("reused") else ""
                self._line(f"{'ok':<9} {record['id']}{took}{note}", status=status, important=False)
            elif status == "failed":
                self._failed += 1
                error = record.get("error") or {}
                self._line(f"FAILED    {record['id']}: {error.get('type')}: {_first_line(error.get('message'))}",
                           status=status, important=True)
            else:
                self._line(f"{status:<9} {record['id']}: {record.get('reason') or ''}", status=status, important=True)
        elif kind == "interrupt":
            hard = " again: killing everything now" if event.get("hard") else ": stopping running tasks"
            self._line(f"{event['signal']} received{hard}", status="failed", important=True)
        elif kind == "run_finished":
            counts: dict[str, int] = {}
            for status in event["tasks"].values():
                counts[status] = counts.get(status, 0) + 1
            text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            self._line(f"run {event['status']} in {event['duration_s']:.2f}s: {text}",
                       status="succeeded" if event["status"] == "succeeded" else "failed",
                       important=event["status"] != "succeeded")
        self._redraw()

    def _line(self, text: str, *, status: str | None = None, important: bool) -> None:
        if self.quiet and not important:
            return
        if self.tty:
            self._clear_status()
            if status in _COLOURS:
                text = f"\033[{_COLOURS[status]}m{text}\033[0m"
            self.stream.write(text + "\n")
        else:
            self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.stream.flush()

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write("\r\033[K")
            self._status_shown = False

    def _redraw(self) -> None:
        if not self.tty or self.quiet:
            return
        self._clear_status()
        if self._running:
            names = sorted(self._running, key=self._running.get)
            shown = ", ".join(names[:6]) + (f" +{len(names) - 6}" if len(names) > 6 else "")
            self.stream.write(f"[{self._done}/{self._total}] running: {shown}"[:200])
            self._status_shown = True
        self.stream.flush()

    def close(self) -> None:
        if self.tty and not self._closed_stream:
            self._clear_status()
            self.stream.flush()


def _first_line(text) -> str:
    text = str(text or "")
    return text.splitlines()[0] if text else ""
