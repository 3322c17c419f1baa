"""The budget: the CPUs and memory this process may use (opflow/machine.py), what run.json
records of it, and the keys and options that set it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import flow_file, latest_run_dir, run_cli, run_json, write

from opflow.machine import MEMORY_MARGIN, cpus_available, memory_available


def _fake_root(tmp_path: Path, cgroup: str, files: dict[str, str], meminfo: str = "MemAvailable: 1000 kB\n") -> str:
    root = tmp_path / "root"
    write(root, "proc/self/cgroup", cgroup)
    write(root, "proc/meminfo", meminfo)
    for name, text in files.items():
        write(root, f"sys/fs/cgroup/{name}", text)
    return str(root)


def test_taskset_makes_the_default_pool_one_worker(tmp_path):
    """Under `taskset -c 0` the process may use one CPU: the budget and the pool say 1, from affinity."""
    flow_file(tmp_path, """
        - {id: a, plugin: shell, config: {command: "true"}}
        - {id: b, plugin: shell, config: {command: "true"}}
    """)
    result = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "opflow", "run", "flow.yaml", "--json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["workers"] == 1
    assert doc["budget"]["cpus"] == 1 and doc["budget"]["cpus_from"] == "affinity"
    assert doc["budget"]["memory_bytes"] > 0 and doc["budget"]["memory_from"]


def test_the_default_pool_is_the_affinity_not_the_cpu_count(tmp_path):
    flow_file(tmp_path, '- {id: a, plugin: shell, config: {command: "true"}}')
    result = run_cli("run", "flow.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["workers"] == len(os.sched_getaffinity(0)) == doc["budget"]["cpus"]


def test_cgroup_v2_cpu_max_caps_the_affinity(tmp_path):
    root = _fake_root(tmp_path, "0::/job\n", {"job/cpu.max": "150000 100000\n", "job/memory.max": "1048576000\n"})
    if len(os.sched_getaffinity(0)) >= 2:  # 1.5 CPUs of quota round up to 2: a cap only where we have more
        assert cpus_available(root) == (min(2, len(os.sched_getaffinity(0))),
                                        "cgroup cpu.max" if len(os.sched_getaffinity(0)) > 2 else "affinity")
    root = _fake_root(tmp_path / "one", "0::/job\n", {"job/cpu.max": "50000 100000\n"})
    assert cpus_available(root) == (1, "cgroup cpu.max")  # half a CPU: at least 1
    assert _fake_root(tmp_path / "max", "0::/job\n", {"job/cpu.max": "max 100000\n"})
    assert cpus_available(str(tmp_path / "max" / "root"))[1] == "affinity"


def test_cgroup_v1_quota_and_memory_limit(tmp_path):
    root = _fake_root(tmp_path, "4:memory:/box\n2:cpu,cpuacct:/box\n",
                      {"cpu,cpuacct/box/cpu.cfs_quota_us": "100000\n", "cpu,cpuacct/box/cpu.cfs_period_us": "100000\n",
                       "memory/box/memory.limit_in_bytes": "1000000000\n"})
    assert cpus_available(root) == (1, "cgroup cpu.cfs_quota_us")
    assert memory_available(root) == (int(1000000000 * (1 - MEMORY_MARGIN)), "cgroup memory.limit_in_bytes")


def test_memory_falls_back_to_memavailable_less_the_margin(tmp_path):
    root = _fake_root(tmp_path, "0::/job\n", {"job/memory.max": "max\n"}, meminfo="MemAvailable:    2000000 kB\n")
    assert memory_available(root) == (int(2000000 * 1024 * (1 - MEMORY_MARGIN)), "MemAvailable")
    # A cgroup v2 limit wins over MemAvailable; the tightest folder on the way up applies.
    root = _fake_root(tmp_path / "v2", "0::/a/b\n", {"a/memory.max": "500000000\n", "a/b/memory.max": "max\n"})
    assert memory_available(root) == (int(500000000 * (1 - MEMORY_MARGIN)), "cgroup memory.max")


def test_cli_and_workflow_set_the_budget(tmp_path):
    write(tmp_path, "flow.yaml", """
        name: flow
        resources: {cpus: 3, memory: 1GB}
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
    """)
    result = run_cli("run", "flow.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["workers"] == 3
    assert doc["budget"] == {"cpus": 3, "memory_bytes": 1024**3, "cpus_from": "resources", "memory_from": "resources"}
    result = run_cli("run", "flow.yaml", "--cpus", "1", "--memory", "300MB", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["workers"] == 1
    assert doc["budget"] == {"cpus": 1, "memory_bytes": 300 * 1024**2, "cpus_from": "--cpus", "memory_from": "--memory"}
    result = run_cli("run", "flow.yaml", "--memory", "lots", cwd=tmp_path)
    assert result.returncode == 2 and "--memory lots: not a size" in result.stderr and "Traceback" not in result.stderr


def test_a_task_asking_more_than_the_run_has_is_exit_2_before_anything_runs(tmp_path):
    flow_file(tmp_path, """
        - {id: small, plugin: shell, config: {command: "touch ran"}}
        - {id: wide, plugin: shell, config: {command: "true"}, cpus: 2}
        - {id: fat, plugin: shell, config: {command: "true"}, memory: 200MB}
    """)
    result = run_cli("run", "flow.yaml", "--cpus", "1", "--memory", "100MB", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "flow.yaml:4: task 'wide'" in result.stderr and "cpus: 2 is more than the 1 slots" in result.stderr
    assert "flow.yaml:5: task 'fat'" in result.stderr and "memory: 200MB is more than the memory budget" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ran").exists() and not (tmp_path / "logs").exists() or not any(
        p for p in (tmp_path / "logs").iterdir() if not p.name.startswith("."))


def test_validate_checks_the_new_keys_at_their_lines(tmp_path):
    write(tmp_path, "flow.yaml", """
        name: flow
        resources: {cpus: 2, memory: 1GB, mem: 3}
        limits: {api: 2, gpu: {max: 1, scope: machin}}
        tasks:
          - id: a
            plugin: shell
            config: {command: "true"}
            cpus: 3
            memory: 2GB
            limit: ap
            priority: high
          - id: b
            plugin: shell
            config: {command: "true"}
            memory: lots
            cpus: 0
    """)
    result = run_cli("validate", "flow.yaml", cwd=tmp_path)
    assert result.returncode == 2
    err = result.stderr
    for expected in ("flow.yaml:2: resources: unknown key 'mem' (did you mean 'memory'?)",
                     "flow.yaml:3: limits.gpu.scope 'machin' is not a scope (did you mean 'machine'?)",
                     "flow.yaml:8: task 'a': cpus: 3 is more than the workflow's budget (resources.cpus: 2)",
                     "flow.yaml:9: task 'a': memory: 2GB is more than the workflow's budget",
                     "flow.yaml:10: task 'a': limit 'ap' is not in limits (did you mean 'api'?)",
                     "flow.yaml:11: task 'a': 'priority' must be a whole number",
                     "flow.yaml:15: task 'b': 'memory' must be a size",
                     "flow.yaml:16: task 'b': 'cpus' must be a whole number >= 1"):
        assert expected in err, err


def test_the_new_keys_read_the_same_either_way(tmp_path):
    """The quick read (plain data) and the full read (node tree) build the same workflow."""
    from opflow.workflow.loading import load

    path = write(tmp_path, "flow.yaml", """
        name: flow
        resources: {cpus: 4, memory: auto}
        limits: {api: 2, gpu: {max: 1, scope: machine}}
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}, cpus: 2, memory: 1GiB, limit: api, priority: 3}
          - {id: b, plugin: shell, config: {command: "true"}, memory: auto, limit: [gpu, api]}
    """)
    quick, _ = load(path)
    path.write_text(path.read_text() + "# a ${ in a comment: the full read\n")
    full, _ = load(path)
    for workflow in (quick, full):
        a, b = workflow.tasks
        assert (a.cpus, a.memory, a.limit, a.priority) == (2, 1024**3, ("api",), 3)
        assert (b.cpus, b.memory, b.limit, b.priority) == (1, "auto", ("gpu", "api"), None)
        assert workflow.resources == {"cpus": 4, "memory": "auto"}
        assert workflow.limits["gpu"].scope == "machine" and workflow.limits["api"].max == 2
