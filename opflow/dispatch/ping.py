"""`--ping URL`: a dead-man's switch in the healthchecks convention, as a reporter.

    run_started   GET URL/start  (on its own thread: the first task does not wait for it)
    run_finished  GET URL        on success, GET URL/fail otherwise (failed or interrupted)

Best effort, standard library only: each request gives up after `PING_TIMEOUT` (the run's
end waits that long at most, for both), and an unreachable, silent or failing server is
recorded, never a failed run. What each ping
got (an HTTP status, or the error) goes into the run_finished event's `extra` as `ping`,
which the audit trail copies into run.json: this reporter must come before it.
"""
from __future__ import annotations

__all__ = ["Pinger", "PING_TIMEOUT", "check_ping_url"]

import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from opflow import knobs
from opflow.errors import UsageError
from opflow.events import Reporter

#: Seconds each ping may take (OPFLOW_PING_TIMEOUT lowers it for the tests of a silent server).
PING_TIMEOUT = 10.0


def check_ping_url(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--ping {shown_url(url)}: not an http:// or https:// URL")
    return parts


def shown_url(url: str) -> str:
    """The URL as records show it: a user, password or query (tokens) written ***."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def _with_suffix(parts: urllib.parse.SplitResult, suffix: str) -> str:
    """URL/start, URL/fail: the suffix goes on the path, before any query."""
    path = parts.path.rstrip("/") + suffix if suffix else parts.path
    return urllib.parse.urlunsplit(parts._replace(path=path))


def _get(url: str, timeout: float) -> dict:
    began = time.monotonic()
    outcome: dict = {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout) as response:
            outcome["status"] = response.status
    except urllib.error.HTTPError as exc:  # the server answered, with an error: recorded as its status
        outcome["status"] = exc.code
    except Exception as exc:  # unreachable, silent past the timeout, a bad answer: best effort, never the run's failure
        outcome["error"] = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
    outcome["seconds"] = round(time.monotonic() - began, 3)
    return outcome


class Pinger(Reporter):
    def __init__(self, url: str):
        self._parts = check_ping_url(url)
        self._shown = shown_url(url)
        self._timeout = knobs.read("OPFLOW_PING_TIMEOUT") or PING_TIMEOUT
        self._start: dict | None = None
        self._starting: threading.Thread | None = None

    def handle(self, event: dict) -> None:
        if event["event"] == "run_started":
            self._starting = threading.Thread(target=self._ping_start, name="opflow-ping", daemon=True)
            self._starting.start()
        elif event["event"] == "run_finished":
            # The run's end waits one timeout at most for both: /start, if still out (it goes
            # first: a receiver keeps the order), three quarters of it at most; the last word, the rest.
            deadline = time.monotonic() + self._timeout
            if self._starting is not None:
                self._starting.join(self._timeout * 0.75)
            suffix = "" if event["status"] == "succeeded" else "/fail"
            finish = self._ping(suffix, deadline - time.monotonic())
            start = self._start or {"url": shown_url(_with_suffix(self._parts, "/start")), "error": "no answer yet"}
            event.setdefault("extra", {})["ping"] = {"url": self._shown, "start": start, "finish": finish}

    def _ping_start(self) -> None:
        self._start = self._ping("/start", self._timeout)

    def _ping(self, suffix: str, timeout: float) -> dict:
        url = _with_suffix(self._parts, suffix)
        return {"url": shown_url(url), **_get(url, timeout)}
