"""Installable anywhere, and the seed document's quickstart works as written."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, latest_run_dir, records, run_cli

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


def _pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as file:
        return tomllib.load(file)


def test_the_distribution_has_a_free_name_and_every_install_hint_names_it():
    metadata = _pyproject()["project"]
    assert metadata["name"] == "opflow-runner"  # `opflow` on PyPI is an unrelated project
    assert "License :: OSI Approved :: MIT License" in metadata["classifiers"]
    assert "Source" in metadata["urls"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert (REPO / "opflow" / "py.typed").is_file()
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["opflow"]
    for path in [REPO / "README.md", *sorted((REPO / "opflow").rglob("*.py"))]:
        text = path.read_text()
        assert "install opflow[" not in text and "install 'opflow[" not in text and 'install "opflow[' not in text, path


def test_python_m_opflow_help_has_a_clean_usage_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "opflow", "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == "Usage: python -m opflow [OPTIONS] COMMAND [ARGS]..."


def test_requirements_txt_lists_the_runtime_dependencies():
    wanted = {line.split(">=")[0].strip() for line in _pyproject()["project"]["dependencies"]}
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


def test_the_metadata_is_pep_621_in_pyproject_toml_alone():
    project = _pyproject()["project"]
    assert not (REPO / "setup.cfg").exists() and not (REPO / "setup.py").exists()
    assert project["dynamic"] == ["version"]
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "opflow._version.__version__"}
    assert project["scripts"] == {"opflow": "opflow.cli.launch:main"}
    assert project["requires-python"] == ">=3.10"
    extras = project["optional-dependencies"]
    assert sorted(extras) == ["bench", "dask", "test"]
    assert extras["test"] == ["pytest>=7", "pytest-timeout>=2.1", "jsonschema>=4.18", "wheel>=0.40",
                              "prometheus_client>=0.17"]
    assert extras["dask"] == ["distributed>=2024.1", "cryptography>=3.1"]
    assert extras["bench"] == ["matplotlib>=3.5"]


def test_the_installed_distribution_reads_its_metadata_from_pyproject_toml():
    from importlib import metadata

    import opflow

    dist = metadata.distribution("opflow-runner")
    assert dist.version == opflow.__version__
    assert [ep.value for ep in dist.entry_points if ep.group == "console_scripts"] == ["opflow.cli.launch:main"]
    assert set(dist.metadata.get_all("Provides-Extra")) >= {"test", "dask", "bench"}


def test_version_names_the_distribution_python_and_location_as_pip_does(tmp_path):
    import opflow

    proc = run_cli("--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    python = ".".join(map(str, sys.version_info[:3]))
    where = Path(opflow.__file__).resolve().parent
    assert proc.stdout == f"opflow-runner {opflow.__version__} from {where} (python {python})\n"
