"""benchmarks/pool_sizes.py --workflow FILE: the user's own workflow at each pool
size, ending with an `opflow report` of those runs."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from helpers import REPO


def test_pool_sizes_times_the_users_workflow_and_ends_with_a_report(tmp_path):
    (tmp_path / "mine.yaml").write_text(textwrap.dedent("""
        name: mine
        tasks:
          - {id: a, plugin: shell, config: {command: "sleep 0.1"}}
          - {id: b, plugin: shell, config: {command: "sleep 0.1"}}
    """))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pool_sizes.py"), "--workflow", "mine.yaml",
                           "--sizes", "1,2", "--reps", "1", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "predicted" in proc.stdout and "speedup" in proc.stdout  # opflow bench's table
    assert "No recommendation" in proc.stdout  # one run per size is noise
    report = out / "pool_sizes_report.html"
    assert f"report: {report}" in proc.stdout
    text = report.read_text()
    assert "Runs compared" in text and text.count("<section") == 2
