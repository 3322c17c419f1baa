"""Paper cuts: the words and numbers a new user reads.

Each test asserts the text a person sees (terminal, run.json, summary.txt), on
real files and the real CLI.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from opflow.api import load, run
from opflow.rundir.audit import file_tag
from opflow.rundir.history import latest_run
from opflow.words import format_bytes, plural

from helpers import invoke, records


def only_run_dir(log_dir):
    (run_dir,) = [p for p in log_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


ONE_TASK = """
    name: Single
    tasks:
      - {id: only, plugin: shell, config: {command: "true"}}
"""


# words and numbers -----------------------------------------------------------

def test_plural_and_sizes_helpers():
    assert [plural(1, "task"), plural(0, "task"), plural(2, "layer")] == ["1 task", "0 tasks", "2 layers"]
    assert [format_bytes(200 * 1024**2), format_bytes(2 * 1024**3), format_bytes(int(1.5 * 1024**3)),
            format_bytes(1500 * 1024**2)] == ["200MB", "2GB", "1.5GB", "1500MB"]


def test_validate_says_1_task_in_1_layer(here, write_workflow):
    flow = write_workflow(ONE_TASK)
    result = invoke("validate", flow)
    assert result.exit_code == 0
    assert "workflow 'Single', 1 task in 1 layer" in result.output
    assert "tasks" not in result.output and "layers" not in result.output


def test_run_banner_and_summary_use_singulars(here, write_workflow):
    flow = write_workflow(ONE_TASK)
    result = invoke("run", flow, "--executor", "thread", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "run 'Single': 1 task, 1 worker (thread)" in result.output
    summary = (only_run_dir(here / "logs") / "summary.txt").read_text()
    assert "Executor: thread, 1 worker\n" in summary


def test_max_memory_message_shows_the_size_as_written(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: memory
        tasks:
          - {id: hog, plugin: python, config: {function: "faults:allocate", args: [400, 10]}, max_memory: 150MB}
    """)
    result = run(flow, workers=1, log_dir=tmp_path / "logs")
    error = records(result.run_dir)["hog"]["error"]
    assert error["message"] == "the task exceeded max_memory (150MB) and its process tree was killed"


def test_a_worker_exit_status_is_said_once(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: exits
        tasks:
          - {id: quits, plugin: python, config: {function: "faults:os_exit", args: [7]}}
    """)
    result = run(flow, workers=1, log_dir=tmp_path / "logs")
    message = records(result.run_dir)["quits"]["error"]["message"]
    assert re.fullmatch(r"its worker process exited abruptly with status 7 \(pid \d+\)", message), message


@pytest.mark.parametrize("text, line, column", [
    ("name: T\ntasks:\n\t- {id: a, plugin: shell}\n", 3, 1),
    ("name: T\ntasks:\n  - id: a\n\tplugin: shell\n", 4, 1),
    ("name: T\ntasks:\n  - id: a\n    plugin: shell\n  \tconfig: {}\n", 5, 3),
])
def test_a_tab_in_the_indentation_is_called_a_tab(here, tmp_path, text, line, column):
    flow = tmp_path / "tabbed.yaml"
    flow.write_text(text)
    result = invoke("validate", flow)
    assert result.exit_code == 2
    assert f"tabbed.yaml:{line}: invalid YAML: a tab at column {column}: YAML indents with spaces only" in result.output
    assert "Traceback" not in result.output


def test_run_help_lists_the_exit_codes_and_says_params_are_yaml():
    result = invoke("run", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "VALUE is read as a YAML scalar: 5 is a number" in text
    for code, meaning in [("0", "every task succeeded"), ("1", "a task failed"), ("2", "invalid workflow or usage"),
                          ("3", "another run of this workflow holds the lock"), ("130", "interrupted by Ctrl-C"), ("143", "terminated by SIGTERM")]:
        assert re.search(rf"\b{code} {meaning}", text), (code, text)


def test_plan_wraps_a_wide_layer_to_the_terminal(here, write_workflow):
    tasks = "\n".join(f"  - {{id: task_{n:03d}, plugin: shell, config: {{command: 'true'}}}}" for n in range(170))
    flow = write_workflow("name: Wide\ntasks:\n" + tasks + "\n")
    result = invoke("plan", flow, env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "workflow 'Wide': 170 tasks"
    assert lines[1].startswith("layer 1: task_000, task_001")
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert all(line.startswith(" " * len("layer 1: ")) for line in lines[2:])
    shown = re.findall(r"task_\d{3}", result.output)
    assert shown == [f"task_{n:03d}" for n in range(170)]


# names -----------------------------------------------------------------------

def test_run_dir_slug_keeps_accented_letters(here, write_workflow):
    flow = write_workflow(ONE_TASK.replace("Single", "'Données — été 2026 / v2'"))
    assert invoke("run", flow, "--executor", "inline").exit_code == 0
    name = only_run_dir(here / "logs").name
    assert re.fullmatch(r"\d{8}T\d{6}Z-donnees-ete-2026-v2", name), name


def test_two_files_with_the_same_name_get_distinct_run_dirs(here, tmp_path, write_workflow):
    first = write_workflow(ONE_TASK, name="a.yaml")
    (tmp_path / "other").mkdir()
    second = write_workflow(ONE_TASK, name="other/a.yaml")
    for flow in (first, second, first, second):
        assert invoke("run", flow, "--executor", "inline").exit_code == 0
    names = {}
    for run_dir in (p for p in (here / "logs").iterdir() if p.is_dir() and not p.name.startswith(".")):
        names.setdefault(json.loads((run_dir / "run.json").read_text())["workflow_file"], []).append(run_dir.name)
    # The first file keeps the plain names; the second's carry its file tag after the slug.
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-single(-\d+)?", n) for n in names[str(first)]), names
    tag = file_tag(second)
    assert all(re.fullmatch(rf"\d{{8}}T\d{{6}}Z-single-f{tag}(-\d+)?", n) for n in names[str(second)]), names
    assert len(names[str(first)]) == len(names[str(second)]) == 2
    # Each file's latest run is its own (resume, plan's critical path).
    workflow, _ = load(second)
    assert latest_run(here / "logs", workflow).name in names[str(second)]


def test_run_dir_time_and_started_at_are_one_clock_reading(tmp_path, write_workflow, monkeypatch):
    # A clock that moves a whole second at every reading: two readings could never agree.
    ticks = iter(range(10**6))
    start = 1_900_000_000.0
    monkeypatch.setattr("time.time", lambda: start + next(ticks))
    flow = write_workflow(ONE_TASK)
    result = run(flow, executor="inline", log_dir=tmp_path / "logs")
    stamp = datetime.strptime(result.run_dir.name.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    started_at = datetime.fromisoformat(json.loads((result.run_dir / "run.json").read_text())["started_at"])
    assert started_at == stamp  # the same instant, to the millisecond (the clock reads whole seconds)


# YAML habits: x- keys hold anchors, merge keys work ------------------------------

ANCHORS = """
    name: Anchored
    x-defaults: &task_defaults
      plugin: shell
      retries: 1
    x-env: &env {LANG: C}
    tasks:
      - id: a
        <<: *task_defaults
        config: {command: "true", env: {<<: *env, EXTRA: "1"}}
      - id: b
        <<: *task_defaults
        retries: 2
        config: {command: "true"}
        depends_on: [a]
"""


def test_x_keys_and_merge_keys_are_accepted(here, write_workflow):
    flow = write_workflow(ANCHORS)
    result = invoke("validate", flow)
    assert result.exit_code == 0, result.output
    workflow, _ = load(flow)
    a, b = workflow.task("a"), workflow.task("b")
    assert (a.plugin, a.retries, b.plugin, b.retries) == ("shell", 1, "shell", 2)  # the task's own key wins
    assert a.config == {"command": "true", "env": {"LANG": "C", "EXTRA": "1"}}
    assert (a.line, b.line) == (7, 10)
    assert invoke("run", flow, "--executor", "inline").exit_code == 0


def test_a_problem_in_merged_keys_names_the_anchor_line_and_the_task(here, write_workflow):
    flow = write_workflow(ANCHORS.replace("retries: 1", "retries: lots"))
    result = invoke("validate", flow)
    assert result.exit_code == 2
    assert "flow.yaml:4: task 'a': 'retries' must be a number, got 'lots'" in result.output
    assert "constructor" not in result.output


def test_a_bad_merge_key_is_one_problem_without_follow_ons(here, write_workflow):
    flow = write_workflow("""
        name: Bad merge
        tasks:
          - id: a
            <<: 5
            config: {command: "true"}
    """)
    result = invoke("validate", flow)
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{flow}:4: task 'a': merge key '<<' needs a mapping or a list of mappings, such as <<: *defaults "
        "(an alias of an anchored mapping)",
        "opflow: 1 problem found; nothing was run",
    ]


def test_other_unknown_top_level_keys_are_still_errors(here, write_workflow):
    flow = write_workflow("""
        name: Typo
        xdefaults: {}
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
    """)
    result = invoke("validate", flow)
    assert result.exit_code == 2
    assert "flow.yaml:2: unknown key 'xdefaults'" in result.output


# opflow plugins --------------------------------------------------------------

DUCK_MODULE = '''
class Duck:
    """Quack config 'times' times (no Plugin base class)."""

    name = "duck"

    def run(self, config, context):
        return "quack " * config.get("times", 1)


class NotAPlugin:
    """Has no run method."""
'''


@pytest.fixture
def entry_points(monkeypatch, tmp_path):
    """Fake entry points in the `opflow.plugins` group (as in test_plugins.py); returns the list to fill."""
    import importlib.metadata

    site = tmp_path / "site"
    site.mkdir()
    (site / "opflow_duck_plugin.py").write_text(DUCK_MODULE)
    monkeypatch.syspath_prepend(str(site))
    installed: list = []
    real = importlib.metadata.entry_points

    def fake(**kwargs):
        if kwargs.get("group") == "opflow.plugins":
            return importlib.metadata.EntryPoints(installed)
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    return installed


def test_plugins_describes_an_entry_point_class_without_the_plugin_base(here, entry_points, write_workflow):
    import importlib.metadata

    entry_points.append(importlib.metadata.EntryPoint("duck", "opflow_duck_plugin:Duck", "opflow.plugins"))
    entry_points.append(importlib.metadata.EntryPoint("odd", "opflow_duck_plugin:NotAPlugin", "opflow.plugins"))
    listing = invoke("plugins")
    assert listing.exit_code == 0
    lines = {line.split()[0]: line for line in listing.output.splitlines()}
    assert "Quack config 'times' times (no Plugin base class)." in lines["duck"]
    assert "cannot load" not in lines["duck"] and "[entry point]" in lines["duck"]
    assert "(not a plugin: NotAPlugin needs a 'name' and a 'run' method)" in lines["odd"]
    # ... and it runs, as before
    flow = write_workflow("""
        name: Ducks
        tasks:
          - {id: q, plugin: duck, config: {times: 2}}
    """)
    result = run(flow, executor="inline", log_dir=here / "logs")
    assert records(result.run_dir)["q"]["result"] == "quack quack "


def test_plugins_with_a_missing_file_says_so_exit_2(here):
    result = invoke("plugins", "nope.yaml")
    assert result.exit_code == 2
    assert result.output == "opflow: error: nope.yaml: no such file\n"


# an unguarded script ---------------------------------------------------------

BACKSTOP = """\
import sys
import opflow.api
opflow.api.unguarded_call_site = lambda: None  # as if the check before the run had missed it
result = opflow.api.run(sys.argv[1], workers=2, log_dir="logs")
print("status", result.status)
"""


@pytest.mark.parametrize("depends", [False, True], ids=["independent", "with-context"])
def test_workers_refusing_an_unguarded_script_fail_the_run_with_one_reason(tmp_path, write_workflow, faults, depends):
    flow = write_workflow(f"""
        name: backstop
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:ok"}}}}
          - {{id: b, plugin: python, config: {{function: "faults:ok"}}{", depends_on: [a]" if depends else ""}}}
    """)
    (tmp_path / "script.py").write_text(BACKSTOP)
    done = subprocess.run([sys.executable, "script.py", str(flow)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    reason = ('opflow.run() must be called under `if __name__ == "__main__":`: worker processes import the script '
              "that started the run, and each would start the run again")
    if not depends:
        # The pool's workers exit at once, quietly; the run fails with the reason, once per task.
        assert done.returncode == 0 and done.stdout == "status failed\n", done.stdout + done.stderr
        assert done.stderr == ""
        tasks = records(only_run_dir(tmp_path / "logs"))
        assert {(t["status"], t["error"]["type"], t["error"]["message"]) for t in tasks.values()} == {
            ("failed", "UnguardedScript", reason)}
    else:
        # The context store's process refuses: the run cannot start; one error says why.
        assert done.returncode == 1
        assert done.stderr.count("Traceback") == 1
        assert done.stderr.splitlines()[-1] == f"opflow.errors.OpflowError: {reason}"


def test_a_guarded_script_and_an_unguarded_thread_run_are_not_refused(tmp_path, write_workflow, faults):
    write_workflow("""
        name: fine
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
    """)
    (tmp_path / "guarded.py").write_text(
        "import opflow\n\n\ndef main():\n    return opflow.run('flow.yaml', workers=1, log_dir='logs')\n\n\n"
        "if __name__ == '__main__':\n    print(main().status)\n")
    (tmp_path / "threads.py").write_text(
        "import opflow\nprint(opflow.run('flow.yaml', executor='thread', log_dir='logs').status)\n")
    for script in ("guarded.py", "threads.py"):
        done = subprocess.run([sys.executable, script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert (done.returncode, done.stdout, done.stderr) == (0, "succeeded\n", ""), script


# csv_ingest's fallback -------------------------------------------------------

def test_csv_ingest_falls_back_to_the_current_folder_and_names_every_path_tried(here, tmp_path, write_workflow):
    (tmp_path / "flows").mkdir()
    (here / "data.csv").write_text("a,b\n1,2\n")
    flow = write_workflow("""
        name: csv
        tasks:
          - {id: here, plugin: csv_ingest, config: {path: data.csv}}
          - {id: nowhere, plugin: csv_ingest, config: {path: gone.csv}}
          - {id: absolute, plugin: csv_ingest, config: {path: /no/such/dir/x.csv}}
    """, name="flows/flow.yaml")
    result = run(flow, executor="inline", keep_going=True, log_dir=here / "logs")
    tasks = records(result.run_dir)
    assert tasks["here"]["status"] == "succeeded"  # not beside flows/flow.yaml, but in the current folder
    assert tasks["nowhere"]["error"]["message"] == (
        f"config 'path': no such file 'gone.csv'; looked for {tmp_path / 'flows' / 'gone.csv'} (beside the "
        f"workflow file) and {here / 'gone.csv'} (in the current folder)")
    assert tasks["absolute"]["error"]["message"] == (
        "config 'path': no such file '/no/such/dir/x.csv'; looked for /no/such/dir/x.csv")


# settings a backend cannot honour ------------------------------------------------

LIMITS = """
    name: Limits
    tasks:
      - {id: slow, plugin: shell, config: {command: "true"}, timeout: 2}
      - {id: big, plugin: shell, config: {command: "true"}, max_memory: 200MB}
"""


def _after_the_time(line: str) -> str:
    """A console line without its leading date and time of day (plain lines off a terminal)."""
    return re.sub(r"^(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d ", "", line)


def test_inline_says_once_what_it_will_not_enforce_and_its_true_concurrency(here, write_workflow):
    flow = write_workflow(LIMITS)
    result = invoke("run", flow, "--executor", "inline", "--workers", "4")
    assert result.exit_code == 0, result.output
    warnings = [
        "--workers 4 is not used: the inline backend runs one task at a time",
        "timeout is not enforced on the inline backend (each task runs inside opflow itself, to its end); "
        "set on task 'slow'",
        "max_memory is not enforced on the inline backend (each task runs inside opflow's own process); "
        "set on task 'big'",
    ]
    lines = [_after_the_time(line) for line in result.output.splitlines()]
    assert lines[:4] == ["run 'Limits': 2 tasks, 1 worker (inline)", *(f"warning: {w}" for w in warnings)]
    assert sum(line.startswith("warning:") for line in lines) == 3
    doc = json.loads((only_run_dir(here / "logs") / "run.json").read_text())
    assert doc["warnings"] == warnings
    assert doc["workers"] == 1


def test_thread_warns_of_max_memory_even_when_quiet(here, write_workflow):
    flow = write_workflow(LIMITS.replace("timeout: 2", "retries: 0"))
    result = invoke("run", flow, "--executor", "thread", "--workers", "2", "--quiet")
    assert result.exit_code == 0
    assert [_after_the_time(line) for line in result.output.splitlines()] == [
        "warning: max_memory is not enforced on the thread backend (tasks share opflow's own process, so no "
        "task's memory can be told apart); set on task 'big'"]


def test_the_process_backend_enforces_both_and_says_nothing(tmp_path, write_workflow):
    flow = write_workflow(LIMITS)
    result = run(flow, workers=1, log_dir=tmp_path / "logs")
    assert json.loads((result.run_dir / "run.json").read_text())["warnings"] == []


def test_dask_would_warn_of_max_memory_only(write_workflow):
    from opflow.backends.capabilities import concurrency, unenforced_settings

    workflow, _ = load(write_workflow(LIMITS))
    assert unenforced_settings(workflow, "dask", 4) == [
        "max_memory is not enforced on the dask backend (a Dask worker's own --memory-limit applies instead); "
        "set on task 'big'"]
    assert (concurrency("dask", 4), concurrency("inline", 4), concurrency("inline", 0)) == (4, 1, 1)


# Dask: no dashboard, no port 8787 ------------------------------------------------

def test_a_local_cluster_binds_no_fixed_port_and_warns_of_none(tmp_path, write_workflow, faults):
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    import socket

    flow = write_workflow("""
        name: dask ports
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
    """)
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 8787))  # as another program would (or one already does)
            holder.listen()
        except OSError:
            pass  # someone else holds it: the same situation
        done = subprocess.run([sys.executable, "-m", "opflow", "run", str(flow), "--executor", "dask", "--workers", "1",
                               "--log-dir", str(tmp_path / "logs")], cwd=tmp_path, capture_output=True, text=True,
                              timeout=180)
    finally:
        holder.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8787" not in done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr
    assert done.stderr == ""


def test_a_retry_without_delay_says_now_not_in_0_0s(here, write_workflow):
    flow = write_workflow("""
        name: Retry
        tasks:
          - {id: flaky, plugin: shell, config: {command: "exit 3"}, retries: 1}
    """)
    result = invoke("run", flow, "--executor", "thread", "--workers", "1")
    assert result.exit_code == 1
    assert "retrying  flaky now after attempt 1: PluginError: command exited with status 3" in result.output
    assert "in 0.0s" not in result.output


def test_a_character_yaml_cannot_start_a_token_with_is_named(here, tmp_path):
    flow = tmp_path / "at.yaml"
    flow.write_text("name: T\ntasks:\n  - {id: a, plugin: shell, config: {command: @x}}\n")
    result = invoke("validate", flow)
    assert result.exit_code == 2
    assert "at.yaml:3: invalid YAML: while scanning for the next token found '@', a character that cannot start " \
           "any token" in result.output


# words and forms, second pass (issue 25) ------------------------------------------------

def _cli(*args, cwd, env=None):
    from helpers import run_cli

    proc = run_cli(*args, cwd=cwd, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_record_line_and_run_dir_are_absolute_after_run_as_after_resume(tmp_path, monkeypatch):
    (tmp_path / "flow.yaml").write_text("name: abs\ntasks:\n  - {id: a, plugin: shell, config: {command: 'true'}}\n")
    proc = _cli("run", "flow.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = proc.stdout.splitlines()[-1]
    assert record.startswith(f"record: {tmp_path / 'logs'}/"), record
    monkeypatch.chdir(tmp_path)
    result = run("flow.yaml", executor="inline", log_dir="logs")
    assert result.run_dir.is_absolute() and result.run_dir.parent == tmp_path / "logs", result.run_dir


def test_resume_lists_reused_tasks_in_workflow_order(tmp_path):
    (tmp_path / "flow.yaml").write_text(
        "name: order\n"
        "tasks:\n"
        "  - {id: fit, plugin: shell, foreach: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], config: {command: 'true'}}\n"
        "  - {id: final, plugin: shell, depends_on: [fit], config: {command: 'test -f go.flag'}}\n")
    first = _cli("run", "flow.yaml", "--workers", "2", cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    (tmp_path / "go.flag").write_text("")
    run_dir = first.stdout.splitlines()[-1].removeprefix("record: ")
    again = _cli("resume", run_dir, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    expected = [f"fit[{i}]" for i in range(11)]
    shown = re.findall(r" ok +(\S+) .*\(reused\)", again.stdout)
    assert shown == expected, again.stdout
    new_dir = again.stdout.splitlines()[-1].removeprefix("record: ")
    assert json.loads(open(f"{new_dir}/run.json").read())["reused"] == expected


def test_workers_0_means_the_cpu_count_everywhere_it_is_said(tmp_path):
    import os

    import opflow
    from helpers import REPO

    (tmp_path / "flow.yaml").write_text("name: zero\ntasks:\n  - {id: a, plugin: shell, config: {command: 'true'}}\n")
    proc = _cli("run", "flow.yaml", "-w", "0", "--executor", "thread", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cpus = len(os.sched_getaffinity(0))
    assert f"1 task, {plural(cpus, 'worker')} (thread)" in proc.stdout, proc.stdout
    help_text = " ".join(_cli("run", "--help", cwd=tmp_path).stdout.split())
    assert "Pool size; 0: the CPUs this process may use" in help_text, help_text
    assert "0 (the default) means the CPUs this process may use" in " ".join(opflow.run.__doc__.split())
    assert "0 means the CPUs this process may use" in (REPO / "docs" / "cli.md").read_text()


def test_run_help_states_the_log_dir_default_once(tmp_path):
    help_text = " ".join(_cli("run", "--help", cwd=tmp_path).stdout.split())
    assert help_text.count("./logs") == 1, help_text


def test_init_says_exists_for_one_file_and_exist_for_two(tmp_path):
    assert _cli("init", "proj", cwd=tmp_path).returncode == 0
    both = _cli("init", "proj", cwd=tmp_path)
    assert both.returncode == 2
    assert (f"opflow: error: proj/workflow.yaml, proj/sample_data.csv already exist; use --force to overwrite"
            in both.stderr), both.stderr
    (tmp_path / "proj" / "sample_data.csv").unlink()
    one = _cli("init", "proj", cwd=tmp_path)
    assert "opflow: error: proj/workflow.yaml already exists; use --force to overwrite" in one.stderr, one.stderr


def test_pool_size_benchmark_says_1_worker():
    from opflow.cli.bench import verdict  # opflow bench's verdict (benchmarks/pool_sizes.py wraps it)

    said = verdict({1: [1.0, 1.1], 2: [1.2, 1.3]}, [1, 2])
    assert "no larger pool was faster than 1 worker beyond" in said, said


def test_run_json_prints_the_problems_document_for_an_invalid_workflow(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: bad\ntasks:\n  - {id: a, plugin: shel}\n")
    validated = _cli("validate", "bad.yaml", "--json", cwd=tmp_path)
    ran = _cli("run", "bad.yaml", "--json", cwd=tmp_path)
    assert ran.returncode == validated.returncode == 2
    document = json.loads(ran.stdout)
    assert document == json.loads(validated.stdout)
    assert document["ok"] is False and "unknown plugin 'shel'" in document["problems"][0]["message"]
