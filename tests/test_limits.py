"""Bad input that used to pass validate and then hurt the run.

Each is refused by `validate` and `run` alike: exit 2, one located message, no
traceback, nothing run, no run directory.
"""
from __future__ import annotations

import resource
import sys

import pytest

from helpers import run_cli

TASK = '  - {id: t, plugin: shell, config: {command: "touch ran"}}\n'


def bomb() -> str:
    # 9 levels of 9 aliases each: 9^9 (387 million) strings once expanded.
    lines = ["name: bomb", "params:", '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"  {name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\ntasks:\n" + TASK


CASES = {
    "alias bomb": (bomb(), "aliases expand to more than"),
    "deep nesting": ("name: deep\nparams:\n  p: " + "[" * 990 + "]" * 990 + "\ntasks:\n" + TASK,
                     "nested more than 100 levels deep"),
    "recursive anchor": ("name: rec\nparams:\n  a: &a [1, *a]\ntasks:\n" + TASK, "nested more than 100 levels"),
    "bomb in depends_on": ("name: dep\nparams:\n" + bomb().split("params:\n")[1].split("tasks:")[0]
                           + "tasks:\n  - {id: t, plugin: shell, config: {command: 'touch ran'}, depends_on: *i}\n",
                           "aliases expand to more than"),
    "id too long": ("name: long\ntasks:\n  - {id: " + "a" * 240 + ', plugin: shell, config: {command: "touch ran"}}\n',
                    "is 240 characters long; at most 200"),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_hurtful_input_is_refused_before_anything_runs(case, command, tmp_path):
    text, fragment = CASES[case]
    (tmp_path / "flow.yaml").write_text(text, encoding="utf-8")
    done = run_cli(command, "flow.yaml", cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert fragment in done.stderr
    assert "flow.yaml:" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "logs").exists() or not [p for p in (tmp_path / "logs").iterdir() if not p.name.startswith(".")]


def test_an_id_of_exactly_the_limit_runs(tmp_path):
    task_id = "b" * 200
    (tmp_path / "flow.yaml").write_text(f"name: ok\ntasks:\n  - {{id: {task_id}, plugin: shell, config: {{command: 'true'}}}}\n")
    done = run_cli("run", "flow.yaml", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("workers", ["99999999999999999999", "1025", "-1"])  # 0 means the CPUs opflow may use
def test_absurd_workers_exit_2_before_a_run_directory_exists(workers, tmp_path):
    (tmp_path / "flow.yaml").write_text('name: w\ntasks:\n' + TASK)
    done = run_cli("run", "flow.yaml", "--workers", workers, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--workers" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "logs").exists()
    assert not (tmp_path / "ran").exists()


def test_workers_above_the_ceiling_are_refused_by_the_api_too(tmp_path):
    import opflow
    from opflow.errors import UsageError

    (tmp_path / "flow.yaml").write_text('name: w\ntasks:\n' + TASK)
    with pytest.raises(UsageError, match="at most 1024"):
        opflow.run(tmp_path / "flow.yaml", workers=10**20, log_dir=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


def test_running_out_of_memory_while_parsing_is_one_line_exit_1(tmp_path):
    # 100,000 tasks parse to well over 100 MB of address space; the limit allows
    # 100 MB (the interpreter and opflow's imports fit in it).
    lines = ["name: big", "tasks:"]
    lines += [f'  - {{id: t{i}, plugin: shell, config: {{command: "echo {i} padding padding padding"}}}}'
              for i in range(100_000)]
    (tmp_path / "flow.yaml").write_text("\n".join(lines) + "\n")

    def small_address_space():
        limit = 100 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    import subprocess

    # `validate` reads the file as `run` does, and runs nothing if it fits after all.
    done = subprocess.run([sys.executable, "-m", "opflow", "validate", "flow.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, preexec_fn=small_address_space)
    if done.returncode == 0:
        pytest.skip("this interpreter parsed the file within the limit")
    assert done.returncode == 1, done.stderr
    assert "out of memory" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "logs").exists()


def test_a_file_larger_than_the_cap_is_refused_without_reading_it(tmp_path, monkeypatch):
    from opflow.workflow import limits as input_limits, spec

    monkeypatch.setattr(spec, "MAX_FILE_BYTES", 1000)
    (tmp_path / "flow.yaml").write_text('name: w\ntasks:\n' + TASK * 40)
    from opflow.errors import WorkflowError

    with pytest.raises(WorkflowError, match="larger than"):
        spec.load_workflow(tmp_path / "flow.yaml")
    assert input_limits.MAX_FILE_BYTES >= 32 * 2**20  # a 100,000-task file (~10 MB) passes
