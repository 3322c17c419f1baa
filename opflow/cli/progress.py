"""The console reporter: what a person (or cron's mail) sees while a run goes.

On a terminal: finished tasks scroll by as lines, with one status line redrawn
below them, cut to the terminal's width and refreshed every second:

    [0:42] 37/200 done · 2 running · 6 queued · 1 failed · fit_17, fit_18

"running" means started in a worker (the backend said so), "queued" means
submitted and waiting for one. Elsewhere (cron, pipes): plain lines with the
date and time, no colour codes, no redraws. `quiet`: failures only. Colour:
`--color`/`--no-color` (the `colour` argument) first; else off when NO_COLOR is set
(https://no-color.org), on when FORCE_COLOR is (https://force-color.org: a CI log
that shows colours; the lines stay plain lines, dated, with no redraws); else on a
terminal only.
"""
from __future__ import annotations

__all__ = ["ConsoleProgress"]

import os
import re
import shutil
import threading
import time
from typing import TextIO

from opflow import knobs
from opflow.events import Reporter
from opflow.words import plural
from opflow.rundir.failure_text import detail_lines, headline

_COLOURS = {"succeeded": "32", "failed": "31", "skipped": "33", "cancelled": "33", "retrying": "35"}
TICK_SECONDS = 1.0  # the status line's clock is redrawn at least this often
REDRAW_EVERY = 0.1  # seconds: events come faster than a person reads; redraw at most this often
_ANSI = re.compile(r"\033\[[0-9;]*[A-Za-z]")


def _colour_from_environment(tty: bool) -> bool:
    """NO_COLOR wins over FORCE_COLOR (as CPython's own colouring decides); neither: a terminal's."""
    if knobs.read("NO_COLOR") is not None:
        return False
    if knobs.read("FORCE_COLOR") is not None:
        return True
    return tty


class ConsoleProgress(Reporter):
    def __init__(self, stream: TextIO, *, tty: bool, quiet: bool = False, colour: bool | None = None,
                 links: bool = True):
        self.stream = stream
        self.links = links  # a Dask dashboard's link under the banner (not with --json: stdout is the document's)
        self.tty = tty
        self.quiet = quiet
        self.colour = colour if colour is not None else _colour_from_environment(tty)
        self._running: dict[str, int] = {}  # task_id -> worker pid, in start order
        self._queued: set[str] = set()
        self._total = 0
        self._done = 0
        self._failed = 0
        self._started_at: float | None = None
        self._status_shown = False
        self._last_draw = 0.0
        self._dirty = False
        self._closed_stream = False
        self._warnings: list[str] = []
        self._held_retries: dict[str, list[str]] = {}  # --quiet: task_id -> its retry lines, shown if it fails
        self._lock = threading.Lock()  # the ticker thread redraws too
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def handle(self, event: dict) -> None:
        with self._lock:
            if self._closed_stream:
                return
            try:
                self._handle(event)
                self._redraw()
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
        elif kind == "lock_wait":  # before the run starts (api.py): why nothing happens yet
            self._line(event["message"], important=False)
        elif kind == "run_started":
            self._total = len(event["tasks"])
            self._started_at = time.monotonic()
            self._line(f"run '{event['workflow']}': {plural(self._total, 'task')}, "
                       f"{plural(event['workers'], 'worker')} ({event['executor']})",
                       important=False)
            dashboard = (event.get("cluster") or {}).get("dashboard")
            if dashboard and self.links:
                self._line(f"dashboard {dashboard}", important=False)
            for message in self._warnings:
                self._line(f"warning: {message}", status="retrying", important=True)
            if self.tty and not self.quiet and self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, name="opflow-progress", daemon=True)
                self._ticker.start()
        elif kind == "tasks_expanded":  # a foreach over an upstream result made its instances
            self._total += len(event["tasks"]) - 1
            if not self.tty:
                self._line(f"fan-out   {event['task_id']}: {plural(len(event['tasks']), 'instance')}", important=False)
        elif kind == "task_queued":
            self._queued.add(event["task_id"])
        elif kind == "task_started":
            task_id = event["task_id"]
            self._queued.discard(task_id)
            pid = event.get("pid")
            if pid:
                # A worker runs one task at a time: one that starts here has finished
                # the previous (its outcome may still be on the way).
                for other in [t for t, p in self._running.items() if p == pid]:
                    del self._running[other]
            self._running[task_id] = pid or 0
            if not self.tty:
                attempt = f" (attempt {event['attempt']})" if event["attempt"] > 1 else ""
                self._line(f"start     {task_id}{attempt}", important=False)
        elif kind == "task_retrying":
            self._forget(event["task_id"])
            error = event.get("error") or {}
            when = f"in {event['delay_s']:.1f}s" if event["delay_s"] >= 0.05 else "now"
            text = f"retrying  {event['task_id']} {when} after attempt {event['attempt']}: {headline(error)}"
            if self.quiet:  # news only if the task fails in the end: --quiet prints nothing when all succeed
                self._held_retries.setdefault(event["task_id"], []).append(text)
            else:
                self._line(text, status="retrying", important=True)
        elif kind == "task_finished":
            record = event["record"]
            self._forget(record["id"])
            held = self._held_retries.pop(record["id"], [])
            self._done += 1
            status = record["status"]
            if status == "succeeded":
                # The time it ran (its attempts), not its waits for a worker or its backoff.
                ran = record.get("run_s", record.get("duration_s"))
                took = f"  {ran:.2f}s" if ran is not None else ""
                note = "  (reused)" if record.get("reused") else ""
                self._line(f"{'ok':<9} {record['id']}{took}{note}", status=status, important=False)
            elif status == "failed":
                self._failed += 1
                for text in held:
                    self._line(text, status="retrying", important=True)
                error = record.get("error") or {}
                self._line(f"FAILED    {record['id']}: {headline(error)}", status=status, important=True)
                for line in detail_lines(error):
                    self._line(f"    | {line}", important=True)
            else:
                # A trigger rule not met (one_failed, nothing failed) is no news for --quiet (cron mail),
                # nor is each task a stopped run cancelled: the run's last line counts them.
                news = not (record.get("reason") or "").startswith("not triggered") and status != "cancelled"
                self._line(f"{status:<9} {record['id']}: {record.get('reason') or ''}", status=status, important=news)
        elif kind == "interrupt":
            hard = " again: killing everything now" if event.get("hard") else ": stopping running tasks"
            self._line(f"{event['signal']} received{hard}", status="failed", important=True)
        elif kind == "run_finished":
            self._stop.set()
            counts: dict[str, int] = {}
            for status in event["tasks"].values():
                counts[status] = counts.get(status, 0) + 1
            text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            self._line(f"run {event['status']} in {event['duration_s']:.2f}s: {text}",
                       status="succeeded" if event["status"] == "succeeded" else "failed",
                       important=event["status"] != "succeeded")

    def _forget(self, task_id: str) -> None:
        self._running.pop(task_id, None)
        self._queued.discard(task_id)

    def _line(self, text: str, *, status: str | None = None, important: bool) -> None:
        if self.quiet and not important:
            return
        if self.colour and status in _COLOURS:
            text = f"\033[{_COLOURS[status]}m{text}\033[0m"
        if self.tty:
            self._clear_status()
            self.stream.write(text + "\n")
        else:
            self.stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        self.stream.flush()

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write("\r\033[K")
            self._status_shown = False

    def status_text(self, width: int) -> str:
        """The status line, at most `width` characters."""
        elapsed = int(time.monotonic() - self._started_at) if self._started_at is not None else 0
        hours, rest = divmod(elapsed, 3600)
        clock = f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
        parts = [f"[{clock}] {self._done}/{self._total} done", f"{len(self._running)} running",
                 f"{len(self._queued)} queued"]
        if self._failed:
            parts.append(f"{self._failed} failed")
        text = " · ".join(parts)
        names = list(self._running)
        if names:
            room = width - len(text) - 3
            shown: list[str] = []
            for n, name in enumerate(names):
                more = f" +{len(names) - n - 1}" if n < len(names) - 1 else ""
                candidate = ", ".join(shown + [name])
                if len(candidate) + len(more) > room:
                    break
                shown.append(name)
            if not shown:  # not even one name fits whole: the start of the first one
                more = f" +{len(names) - 1}" if len(names) > 1 else ""
                cut = room - len(more) - 1
                if cut >= 6:
                    text += " · " + names[0][:cut] + "…" + more
            else:
                rest_count = len(names) - len(shown)
                text += " · " + ", ".join(shown) + (f" +{rest_count}" if rest_count else "")
        return text[:max(0, width - 1)]  # never the last column: some terminals wrap there

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return shutil.get_terminal_size().columns

    def _redraw(self, force: bool = False) -> None:
        if not self.tty or self.quiet or self._started_at is None:
            return
        now = time.monotonic()
        if not force and not self._stop.is_set() and now - self._last_draw < REDRAW_EVERY:
            # Drawn a moment ago: the ticker draws it again shortly. (Drawing after
            # every event would mostly show the instant after a task ended.)
            self._dirty = True
            if self._status_shown or self._ticker is not None:
                return
        self._last_draw = now
        self._dirty = False
        self._clear_status()
        if not self._stop.is_set():
            self.stream.write(self.status_text(self._width()))
            self._status_shown = True
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW_EVERY):
            with self._lock:
                if self._closed_stream:
                    return
                if not self._dirty and time.monotonic() - self._last_draw < TICK_SECONDS:
                    continue
                try:
                    self._redraw(force=True)
                except (OSError, ValueError):
                    return

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self.tty and not self._closed_stream:
                try:
                    self._clear_status()
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
        if self._ticker is not None:
            self._ticker.join(timeout=2)
