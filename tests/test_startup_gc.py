"""startup_gc.py: the CLI holds the cyclic collector off while it starts a run, and only then."""
from __future__ import annotations

import gc
import json
import subprocess
import sys

from opflow.cli import startup_gc

PROBE = """
import atexit, gc, json, sys

atexit.register(lambda: print(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()})))

if __name__ == "__main__":
    sys.argv[0] = "opflow"
    from opflow.cli.launch import main
    main()
"""


def probe(tmp_path, *args: str) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    done = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_cli_run_turns_the_collector_back_on_with_start_up_frozen(tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: one\ntasks:\n  - {id: hello, plugin: shell, config: {command: \"true\"}}\n")
    seen = probe(tmp_path, "run", str(flow), "-q", "--log-dir", str(tmp_path / "logs"))
    assert seen["enabled"] is True
    assert seen["frozen"] > 10_000  # the imports and the parsed workflow: out of the collector's way


def test_a_caller_that_turned_the_collector_off_keeps_it_off():
    was_enabled = gc.isenabled()
    frozen = gc.get_freeze_count()
    gc.disable()
    try:
        startup_gc.hold()
        startup_gc.release()
        startup_gc.release_at_start().handle({"event": "run_started"})
        assert not gc.isenabled()
        assert gc.get_freeze_count() == frozen
    finally:
        if was_enabled:
            gc.enable()
