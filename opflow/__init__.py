"""opflow: run YAML workflows of tasks on a multi-core machine, with an audit trail.

    result = opflow.run("flow.yaml", workers=4)   # -> RunResult: .status, .records, .run_dir, .duration_s
    await opflow.run_async("flow.yaml")           # inside an event loop
    opflow.resume("logs/20261124T031500Z-nightly")
    opflow.run_state("logs/20261124T031500Z-nightly")  # its status; "crashed" if its coordinator died
"""
from opflow._version import __version__

__all__ = ["run", "run_async", "resume", "load", "RunResult", "Plugin", "run_state", "__version__"]


def __getattr__(name):
    # Lazy, so `import opflow` (and `opflow validate`) stays cheap.
    if name in ("run", "run_async", "resume", "load", "RunResult"):
        from opflow import api

        return getattr(api, name)
    if name == "Plugin":
        from opflow.plugin_base import Plugin

        return Plugin
    if name == "run_state":
        from opflow.rundir.layout import run_state

        return run_state
    raise AttributeError(f"module 'opflow' has no attribute {name!r}")
