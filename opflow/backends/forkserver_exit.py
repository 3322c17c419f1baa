"""Imported by the pool's forkserver alone (mp_context.FORKSERVER_PRELOAD): it leaves without teardown.

The forkserver keeps the caller's stdout and stderr open (the workers it forks
inherit them, for what a task prints outside its log), so `opflow run | cat`,
`$(opflow run ...)` and any caller that captures the output wait until it is
gone. It goes when the coordinator exits, but then tore down every module it had
preloaded: 30-70 ms after the run had ended. It has nothing to clean up (the
workers it forked are gone; they never run atexit handlers, leaving by
`os._exit`), so once its own loop has ended it exits at once.

It also takes back the PYTHONSAFEPATH that mp_context set to start it, before
it forks a worker: the workers' tasks get the environment the user had.
"""
import atexit
import os
import sys

if os.environ.get("PYTHONSAFEPATH") == "opflow-helpers":  # mp_context.SAFE_PATH_VALUE
    del os.environ["PYTHONSAFEPATH"]


def _leave() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed or gone: nothing of ours was in it
            pass
    os._exit(0)  # the status of the forkserver's own SystemExit at the end of its loop


atexit.register(_leave)
