"""Installable anywhere, and the seed document's quickstart works as written."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys

from helpers import REPO, latest_run_dir, records, run_cli


def _setup_cfg():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return config


def test_the_distribution_has_a_free_name_and_every_install_hint_names_it():
    metadata = _setup_cfg()["metadata"]
    assert metadata["name"] == "opflow-runner"  # `opflow` on PyPI is an unrelated project
    assert "License :: OSI Approved :: MIT License" in metadata["classifiers"]
    assert "Source" in metadata["project_urls"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert (REPO / "opflow" / "py.typed").is_file()
    assert "py.typed" in _setup_cfg()["options.package_data"]["opflow"]
    for path in [REPO / "README.md", *sorted((REPO / "opflow").rglob("*.py"))]:
        text = path.read_text()
        assert "install opflow[" not in text and "install 'opflow[" not in text and 'install "opflow[' not in text, path


def test_python_m_opflow_help_has_a_clean_usage_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "opflow", "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == "Usage: python -m opflow [OPTIONS] COMMAND [ARGS]..."


def test_requirements_txt_lists_the_runtime_dependencies():
    wanted = {line.split(">=")[0].strip() for line in _setup_cfg()["options"]["install_requires"].split("\n") if line.strip()}
    listed = {line.split(">=")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert listed == wanted


def test_the_seed_quickstart_example_copied_to_the_project_root_runs(tmp_path):
    # the layout of a checkout: examples/ with its CSV, and the example copied to the root
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "examples", root / "examples")
    shutil.copy(root / "examples" / "workflow_example.yaml", root / "my_workflow.yaml")
    proc = run_cli("my_workflow.yaml", cwd=root)  # python -m opflow my_workflow.yaml
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = records(latest_run_dir(root / "logs"))
    assert {r["status"] for r in recs.values()} == {"succeeded"}
    # and where it is, from anywhere
    proc = run_cli("run", str(root / "examples" / "workflow_example.yaml"), "--log-dir", str(tmp_path / "l2"),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
