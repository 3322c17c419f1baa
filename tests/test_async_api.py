"""The asyncio façade, through the real API.

Cancelling `opflow.run_async` (here by `asyncio.wait_for`) stops the run as
SIGINT does: what runs is killed, run.json says `interrupted`, and the caller
gets control back promptly. Parsing and pool start-up leave the caller's loop
free: a heartbeat coroutine in it keeps its beat.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest

import opflow
from helpers import gone, latest_run_dir, wait_for

#: How late a 20 ms heartbeat may be at worst. Blocking the loop for parsing or
#: for starting the forkserver cost seconds; what is left is scheduling noise
#: on a loaded machine (the goal is ~50 ms; the bound leaves room for CI load).
MAX_STALL = 0.25


def test_cancelling_run_async_stops_the_run_like_sigint(tmp_path, write_workflow):
    flow = write_workflow("""
        name: cancel me
        tasks:
          - {id: long, plugin: shell, config: {command: "echo $$ > long.pid; exec sleep 60"}}
          - {id: after, plugin: shell, config: {command: "true"}, depends_on: [long]}
    """)
    errors = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(opflow.run_async(flow, log_dir=tmp_path / "logs", workers=1), 8)
        return time.monotonic() - started

    took = asyncio.run(main())
    assert took < 8 + 10, f"wait_for(…, 8) returned after {took:.1f} s"
    run_dir = latest_run_dir(tmp_path / "logs")
    document = json.loads((run_dir / "run.json").read_text())
    assert document["status"] == "interrupted"
    assert document["tasks"] == {"long": "cancelled", "after": "cancelled"}
    assert (run_dir / "summary.txt").exists()
    pid = int((tmp_path / "long.pid").read_text())
    wait_for(lambda: gone(pid), 10, "the task's sleep to be killed")
    assert errors == [], errors  # no "exception was never retrieved", no AttributeError


def test_cancelling_run_async_while_it_parses_leaves_nothing(tmp_path):
    lines = ["name: big", "tasks:"] + [f'  - {{id: t{i}, plugin: shell, config: {{command: "true"}}}}'
                                       for i in range(20_000)]
    flow = tmp_path / "flow.yaml"
    flow.write_text("\n".join(lines) + "\n")

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(opflow.run_async(flow, log_dir=tmp_path / "logs"), 0.05)

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 5  # not the whole parse
    logs = tmp_path / "logs"
    assert not logs.exists() or not [p for p in logs.iterdir() if not p.name.startswith(".")]


def test_parsing_and_pool_start_up_leave_the_callers_loop_free(tmp_path):
    lines = ["name: heartbeat", "tasks:"]
    lines += [f'  - {{id: t{i}, plugin: python, config: {{function: "os:getpid"}}}}' for i in range(3000)]
    flow = tmp_path / "flow.yaml"
    flow.write_text("\n".join(lines) + "\n")
    period = 0.02

    async def heartbeat(lateness: list, stop: asyncio.Event):
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            due = loop.time() + period
            await asyncio.sleep(period)
            lateness.append(loop.time() - due)

    async def main():
        lateness: list[float] = []
        stop = asyncio.Event()
        beat = asyncio.create_task(heartbeat(lateness, stop))
        await asyncio.sleep(0.1)
        result = await opflow.run_async(flow, log_dir=tmp_path / "logs", workers=2)
        stop.set()
        await beat
        return result, lateness

    result, lateness = asyncio.run(main())
    assert result.status == "succeeded"
    worst = max(lateness)
    print(f"worst stall {worst*1000:.0f} ms over {len(lateness)} beats")
    assert worst < MAX_STALL, f"the caller's loop stalled {worst * 1000:.0f} ms (beats: {len(lateness)})"
