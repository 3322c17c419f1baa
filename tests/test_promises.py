"""What the README promises holds on every path: stopping, repeating, reusing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import REPO

# -- the Python API, called again and again in one process ------------------------
LOOP = textwrap.dedent("""
    import os, sys
    import opflow

    if __name__ == "__main__":
        counts = []
        for _ in range(int(sys.argv[3])):
            assert opflow.run(sys.argv[1], workers=2, log_dir=sys.argv[2]).status == "succeeded"
            counts.append(len(os.listdir("/proc/self/fd")))
        print(counts)
""")


def test_the_python_api_leaves_no_descriptor_open_run_after_run(tmp_path, write_workflow):
    # a -> b starts the context store's Manager as well as the pool's workers.
    flow = write_workflow("""
        name: again
        tasks:
          - {id: a, plugin: shell, config: {command: "echo a"}}
          - {id: b, plugin: shell, config: {command: "echo b"}, depends_on: [a]}
    """)
    script = tmp_path / "service.py"
    script.write_text(LOOP)
    done = subprocess.run([sys.executable, str(script), str(flow), str(tmp_path / "logs"), "8"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    # The first run starts what lives as long as the process (the forkserver, the resource tracker).
    assert len(set(counts[1:])) == 1, f"open descriptors after each run: {counts}"
