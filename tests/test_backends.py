"""The backend wing: results cross processes whatever module defined them (the layering: test_layout.py)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import REPO, latest_run_dir, records, run_cli, wait_for

OPFLOW = REPO / "opflow"

SHAPES = """
    import os
    import time
    from dataclasses import dataclass


    @dataclass
    class Point:
        x: int
        y: int


    def make():
        return {"point": Point(3, 4), "pid": os.getpid()}


    def read(context, name):
        time.sleep(0.3)  # long enough that both workers take readers
        point = context["make"]["point"]
        return {"pid": os.getpid(), "sum": point.x + point.y, "from": context[name]["pid"]}
"""

PLUGIN = """
    import os
    from dataclasses import dataclass

    from opflow import Plugin


    @dataclass
    class Box:
        size: int


    class BoxMaker(Plugin):
        name = "box_maker"

        def run(self, config, context):
            return {"box": Box(config["size"]), "pid": os.getpid()}


    class BoxReader(Plugin):
        name = "box_reader"

        def run(self, config, context):
            import time

            time.sleep(0.3)
            return {"pid": os.getpid(), "size": context["boxes"]["box"].size}
"""


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_a_result_of_a_users_class_is_read_on_another_worker(tmp_path, executor):
    (tmp_path / "shapes.py").write_text(textwrap.dedent(SHAPES))
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "boxes.py").write_text(textwrap.dedent(PLUGIN))
    readers = "\n".join(
        f"  - {{id: r{i}, plugin: python, config: {{function: 'shapes:read', kwargs: {{name: make}}}}, depends_on: [make]}}\n"
        f"  - {{id: b{i}, plugin: box_reader, depends_on: [boxes]}}"
        for i in range(6))
    (tmp_path / "flow.yaml").write_text(
        "name: classes\ntasks:\n"
        "  - {id: make, plugin: python, config: {function: 'shapes:make'}}\n"
        "  - {id: boxes, plugin: box_maker, config: {size: 7}}\n" + readers + "\n")
    result = run_cli("run", "flow.yaml", "--workers", "2", "--executor", executor, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    recs = records(latest_run_dir(tmp_path / "logs"))
    assert {recs[f"r{i}"]["result"]["sum"] for i in range(6)} == {7}
    assert {recs[f"b{i}"]["result"]["size"] for i in range(6)} == {7}
    if executor == "process":
        producer = recs["make"]["result"]["pid"]
        assert any(recs[f"r{i}"]["result"]["pid"] != producer for i in range(6)), "no reader ran on the other worker"
        box_producer = recs["boxes"]["result"]["pid"]
        assert any(recs[f"b{i}"]["result"]["pid"] != box_producer for i in range(6))


# -- the context: small results ride with the work, large ones go by the store ---------
CHAIN_FNS = """
    def make(size, label):
        return {"label": label, "payload": "x" * size}


    def read_all(context):
        # the direct upstream task, and a distant ancestor, both small and large
        return {name: (context[name]["label"], len(context[name]["payload"]))
                for name in sorted(context) if name != "params"}


    def keys(context):
        return sorted(context)
"""


@pytest.mark.parametrize("executor", ["process", "thread", "inline"])
def test_every_upstream_result_is_readable_small_or_large_near_or_far(tmp_path, executor):
    (tmp_path / "fns.py").write_text(textwrap.dedent(CHAIN_FNS))
    big = 200_000  # past the 64 KiB inline limit: it goes by the Manager
    steps = [("s0", 10), ("b1", big), ("s2", 10), ("s3", 10), ("b4", big), ("s5", 10)]
    lines = ["name: chain", "tasks:"]
    previous = None
    for task_id, size in steps:
        deps = f", depends_on: [{previous}]" if previous else ""
        lines.append(f"  - {{id: {task_id}, plugin: python, config: {{function: 'fns:make', "
                     f"kwargs: {{size: {size}, label: {task_id}}}}}{deps}}}")
        previous = task_id
    lines.append("  - {id: reader, plugin: python, config: {function: 'fns:read_all'}, depends_on: [s5]}")
    lines.append("  - {id: lister, plugin: python, config: {function: 'fns:keys'}, depends_on: [s0]}")
    (tmp_path / "flow.yaml").write_text("\n".join(lines) + "\n")
    result = run_cli("run", "flow.yaml", "--workers", "2", "--executor", executor, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    recs = records(latest_run_dir(tmp_path / "logs"))
    assert recs["reader"]["result"] == {task_id: [task_id, size] for task_id, size in steps}
    assert recs["lister"]["result"] == ["params", "s0"]  # exactly its upstream tasks, and params


def test_a_killed_coordinator_gets_no_leaked_semaphore_warning(tmp_path):
    """The resource tracker cleans up after a SIGKILLed coordinator, silently."""
    (tmp_path / "flow.yaml").write_text(textwrap.dedent("""
        name: killed
        tasks:
          - {id: slow, plugin: shell, config: {command: "sleep 30"}}
          - {id: after, plugin: shell, config: {command: "true"}, depends_on: [slow]}
    """))
    proc = subprocess.Popen([sys.executable, "-m", "opflow", "run", "flow.yaml", "--workers", "2"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any((tmp_path / "logs").glob("*/events.jsonl"))
                 and "task_started" in next((tmp_path / "logs").glob("*/events.jsonl")).read_text(),
                 timeout=60, what="the task to start")
    finally:
        proc.kill()
    out, err = proc.communicate(timeout=60)  # EOF once the workers and helpers have gone too
    assert "leaked" not in err and "resource_tracker" not in err, err


def test_a_silent_task_has_no_log_and_no_scratch_file_is_left(tmp_path):
    """Logs are made only for tasks that write (the worker's spool is renamed at the first byte)."""
    (tmp_path / "talk.py").write_text("def say():\n    print('HELLO-FROM-TASK')\n    return 1\n")
    (tmp_path / "flow.yaml").write_text(textwrap.dedent("""
        name: quiet-and-loud
        tasks:
          - {id: silent, plugin: python, config: {function: "os:getpid"}}
          - {id: loud, plugin: python, config: {function: "talk:say"}, depends_on: [silent]}
          - {id: silent_again, plugin: python, config: {function: "os:getpid"}, depends_on: [loud]}
          - {id: sh, plugin: shell, config: {command: "echo FROM-SHELL"}, depends_on: [silent_again]}
    """))
    result = run_cli("run", "flow.yaml", "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    recs = records(run_dir)
    assert recs["silent"]["log"] is None and not (run_dir / "tasks" / "silent.log").exists()
    assert recs["silent_again"]["log"] is None and not (run_dir / "tasks" / "silent_again.log").exists()
    loud = (run_dir / "tasks" / "loud.log").read_text()
    assert recs["loud"]["log"] == "tasks/loud.log" and "=== attempt 1" in loud and "HELLO-FROM-TASK" in loud
    assert "FROM-SHELL" in (run_dir / "tasks" / "sh.log").read_text()
    assert [p.name for p in (run_dir / "tasks").iterdir() if p.name.startswith(".")] == []


# What a backend can do: said once, on its class (backends/base.py) -------------------------

from opflow.backends import BACKENDS, register  # noqa: E402
from opflow.backends.base import CAPABILITIES, Backend  # noqa: E402

ANSWERS = {"parallel": {True, False}, "can_stop": {True, False}, "timeout": {"kills", "abandons", "never"},
           "max_memory": {True, False}, "takes_batches": {True, False}, "takes_scheduler": {True, False},
           "task_output": {"fd", "python"}}


def test_every_backend_class_answers_every_capability_question():
    assert set(ANSWERS) == set(CAPABILITIES)
    assert list(BACKENDS) == ["process", "thread", "inline", "dask"]
    for name, cls in BACKENDS.items():
        assert cls.name == name
        for question, allowed in ANSWERS.items():
            assert getattr(cls, question) in allowed, f"{cls.__qualname__}.{question} = {getattr(cls, question)!r}"
        if cls.timeout != "kills":
            assert cls.why_no_timeout, f"{cls.__qualname__} says no reason for its timeout"
        if not cls.max_memory:
            assert cls.why_no_max_memory, f"{cls.__qualname__} says no reason for its max_memory"


@pytest.mark.parametrize("name", ["process", "thread", "inline", "dask"])
def test_each_implementation_inherits_its_answers_and_says_none_itself(name):
    import importlib

    cls = BACKENDS[name]
    module, _, attribute = cls.implementation.partition(":")
    implementation = getattr(importlib.import_module(module), attribute)
    assert issubclass(implementation, cls)
    for question in ("name", "implementation", *CAPABILITIES, "why_no_timeout", "why_no_max_memory"):
        assert question not in implementation.__dict__, f"{implementation.__qualname__} says {question} again"


def test_register_refuses_a_backend_that_leaves_a_question_unanswered():
    class Half(Backend):
        name = "half"
        parallel = True

    with pytest.raises(TypeError, match="can_stop, timeout"):
        register(Half)
    assert "half" not in BACKENDS


def _loaded_by(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys\n{code}\nprint(sorted(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    return set(eval(out))  # a printed list of module names


HEAVY = ("multiprocessing", "concurrent.futures.process", "distributed", "dask", "opflow.backends.process",
         "opflow.backends.local", "opflow.backends.dask", "opflow.backends.mp_context")


@pytest.mark.parametrize("code", [
    "import opflow.backends",
    "import opflow.backends.capabilities",
    "import opflow.cli.commands",
    "from opflow.backends import BACKENDS\nfor cls in BACKENDS.values(): cls.parallel, cls.task_output, cls.timeout",
])
def test_asking_what_a_backend_can_do_loads_neither_the_pool_nor_dask(code):
    loaded = _loaded_by(code)
    assert [m for m in loaded if m.startswith(HEAVY)] == []


def test_validate_loads_neither_the_pool_nor_dask(tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: v\ntasks:\n  - {id: a, plugin: shell, config: {command: 'true'}}\n")
    code = ("from opflow.cli.commands import main\n"
            f"try:\n    main(['validate', {str(flow)!r}])\nexcept SystemExit as done:\n    assert not done.code\n")
    loaded = _loaded_by(code)
    assert [m for m in loaded if m.startswith(HEAVY)] == []


def _compares_to_a_backend_name(path: Path) -> list[str]:
    import ast

    names = set(BACKENDS)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            constants = [c for c in ast.walk(node) if isinstance(c, ast.Constant) and c.value in names]
            if constants:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_api_and_the_worker_ask_the_backend_class_not_its_name():
    paths = [OPFLOW / "api.py", *sorted((OPFLOW / "worker").glob("*.py")), OPFLOW / "backends" / "mp_context.py",
             OPFLOW / "backends" / "capabilities.py"]
    assert [hit for path in paths for hit in _compares_to_a_backend_name(path)] == []
    for path in sorted((OPFLOW / "worker").glob("*.py")):
        assert "distributed" not in path.read_text(encoding="utf-8"), f"{path.name} sniffs for Dask"


def test_the_name_check_sees_a_comparison():
    probe = REPO / "tests" / "_probe_names.py"
    try:
        probe.write_text('x = executor == "dask"\ny = executor in ("thread", "inline")\nz = "process"\n')
        assert len(_compares_to_a_backend_name(probe)) == 2
    finally:
        probe.unlink()


FIFTH_FLOW = """
    name: fifth
    tasks:
      - {id: hello, plugin: python, config: {function: "os:getcwd"}, timeout: 30}
      - {id: after, plugin: shell, depends_on: [hello], config: {command: "echo fifth"}, max_memory: 1GB}
"""


@pytest.fixture
def fifth_backend():
    """A fifth backend: one class, registered for this test only."""
    from concurrent.futures import Future

    from opflow.backends.local import run_in_thread
    from opflow.worker.context import ContextStore

    class Fifth(Backend):
        """Each task run at once in the caller's thread: `inline` under another name and answers."""

        name = "fifth"
        parallel = False
        can_stop = False
        timeout = "never"
        max_memory = False
        takes_batches = False
        takes_scheduler = False
        task_output = "python"  # it runs in opflow's own process; run.json must take the class's word
        why_no_timeout = "the fifth backend never looks at a clock"
        why_no_max_memory = "the fifth backend never looks at memory"
        opened: list = []

        def __init__(self, workers, on_start=None):
            self._store = ContextStore()
            self._on_start = on_start
            Fifth.opened.append(workers)

        def submit(self, request):
            request.store = self._store
            future = Future()
            future.set_result(run_in_thread(request, self._on_start))
            return future

        def seed(self, task_id, blob):
            self._store.put(task_id, blob)

        def max_inflight(self, workers):
            return 1

        def close(self, kill=False):
            pass

    register(Fifth)
    try:
        yield Fifth
    finally:
        del BACKENDS["fifth"]


def test_a_fifth_backend_is_one_class(tmp_path, fifth_backend):
    import json

    import opflow

    flow = tmp_path / "flow.yaml"
    flow.write_text(textwrap.dedent(FIFTH_FLOW))
    result = opflow.run(flow, executor="fifth", workers=3, log_dir=tmp_path / "logs")
    assert result.exit_code == 0, result.records
    assert result.tasks == {"hello": "succeeded", "after": "succeeded"}
    assert fifth_backend.opened == [1]  # not parallel: one at a time, whatever --workers says
    doc = json.loads((result.run_dir / "run.json").read_text())
    assert doc["executor"] == "fifth" and doc["task_output"] == "python"
    assert doc["warnings"] == [
        "--workers 3 is not used: the fifth backend runs one task at a time",
        "timeout is not enforced on the fifth backend (the fifth backend never looks at a clock); set on task 'hello'",
        "max_memory is not enforced on the fifth backend (the fifth backend never looks at memory); set on task 'after'",
    ]
    with pytest.raises(opflow.errors.UsageError, match="--scheduler goes with --executor dask"):
        opflow.run(flow, executor="fifth", scheduler="tcp://nowhere:1", log_dir=tmp_path / "logs")
