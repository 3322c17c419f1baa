"""The cyclic garbage collector, held off while the CLI starts a run.

Start-up makes a few hundred thousand objects that live until the process ends:
the modules it imports (networkx alone is thousands of functions) and the parsed
workflow. Each time the collector runs while they are being made, it scans them
all again, for nothing: about a tenth of a one-task run's CPU. So the console
script holds it off from its first line (`hold`), and the run turns it back on
once it has started (`release`, at the `run_started` event), with everything
made so far frozen out of its way (`gc.freeze`): later collections, all through
the run, skip those objects. Only the CLI holds it: a library caller's collector
is its own.
"""
from __future__ import annotations

__all__ = ["hold", "release", "release_at_start"]

import gc

_held = False


def hold() -> None:
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def release() -> None:
    """Back on, what exists now frozen; a no-op unless `hold` turned it off."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()


def release_at_start():
    """A reporter for the CLI's run: `release` once the run has started."""
    from opflow.events import Reporter  # here: the console script imports this module first thing

    class ReleaseAtStart(Reporter):
        def handle(self, event: dict) -> None:
            if event["event"] == "run_started":
                release()

    return ReleaseAtStart()
