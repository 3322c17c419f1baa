"""run.json's `packages` says what computed the numbers (issue 25 item 7), through the real CLI:
numpy, the distributions the python tasks' modules come from or import, and `provenance: [names]`."""
from __future__ import annotations

from importlib import metadata

from helpers import latest_run_dir, run_cli, run_json, write

FLOW = """
    name: provenance
    provenance: [pytest]
    tasks:
      - {id: local, plugin: python, config: {function: "analysis:count"}}
      - {id: installed, plugin: python, config: {function: "sortedcontainers:SortedList"}}
"""

MODULE = """
import json
import jsonschema
from yaml import safe_load


def count():
    return len(json.dumps(safe_load("[1, 2]"))) + 0 * len(jsonschema.__name__)
"""


def test_run_json_records_numpy_the_tasks_distributions_and_the_provenance_key(tmp_path):
    flow = write(tmp_path, "flow.yaml", FLOW)
    write(tmp_path, "analysis.py", MODULE)
    result = run_cli("run", str(flow), "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    packages = run_json(latest_run_dir(tmp_path / "logs"))["packages"]
    for name in ("numpy", "jsonschema", "PyYAML", "sortedcontainers", "pytest", "pandas", "click"):
        assert packages.get(name) == metadata.version(name), (name, packages)
    assert "json" not in packages and "analysis" not in packages  # the standard library, the file itself


def test_a_bad_provenance_key_is_a_validate_error_at_its_line(tmp_path):
    flow = write(tmp_path, "flow.yaml", """
        name: provenance
        provenance:
          - scikit-learn
          - "not a name"
          - scikit-learn
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
    """)
    result = run_cli("validate", str(flow), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"{flow}:4:" in result.stderr and "'not a name' is not a distribution's name" in result.stderr
    assert f"{flow}:5:" in result.stderr and "'scikit-learn' is listed twice" in result.stderr
    flow.write_text("name: p\nprovenance: scikit-learn\ntasks:\n  - {id: a, plugin: shell, config: {command: 'true'}}\n")
    result = run_cli("validate", str(flow), cwd=tmp_path)
    assert result.returncode == 2 and f"{flow}:2:" in result.stderr and "must be a list" in result.stderr
