"""backends/mp_context.py: the pool's helper processes start before the workflow is parsed.

Each case is a fresh interpreter (the forkserver is one per interpreter, and this
test process may have started one already), running `opflow.run` on a one-task
workflow with `load` wrapped to note whether the forkserver was running by then.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from opflow.backends.mp_context import start_method

PROBE = textwrap.dedent("""
    import json, sys
    from multiprocessing import forkserver

    import opflow.api

    seen = {}
    original_load = opflow.api.load


    def load(*args, **kwargs):
        seen["forkserver_at_parse"] = forkserver._forkserver._forkserver_pid is not None
        return original_load(*args, **kwargs)


    if __name__ == "__main__":
        opflow.api.load = load
        result = opflow.api.run(sys.argv[1], executor=sys.argv[2], workers=2, log_dir=sys.argv[3])
        seen["status"] = result.status
        print(json.dumps(seen))
""")


def probe(tmp_path, executor: str) -> dict:
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: one\ntasks:\n  - {id: hello, plugin: shell, config: {command: \"true\"}}\n")
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    done = subprocess.run([sys.executable, str(script), str(flow), executor, str(tmp_path / "logs")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(start_method() != "forkserver", reason="the forkserver start method only")
def test_a_process_run_starts_the_forkserver_before_it_parses_the_workflow(tmp_path):
    # Started first, the forkserver imports opflow on another core while the workflow is parsed.
    assert probe(tmp_path, "process") == {"forkserver_at_parse": True, "status": "succeeded"}


def test_a_thread_run_starts_no_forkserver(tmp_path):
    assert probe(tmp_path, "thread") == {"forkserver_at_parse": False, "status": "succeeded"}


def test_the_forkserver_preload_leaves_out_plugin_discovery():
    # importlib.metadata (and the email package under it) is for finding plugins, which
    # the coordinator does; the forkserver would import it for every run, for nothing.
    code = ("import sys; from opflow.backends.mp_context import FORKSERVER_PRELOAD; "
            "[__import__(name) for name in FORKSERVER_PRELOAD]; print('importlib.metadata' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
