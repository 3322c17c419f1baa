"""What the README promises holds on every path: stopping, repeating, reusing."""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from helpers import REPO, gone, latest_run_dir, records, run_cli, run_dirs, signal_when

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


# -- a timeout kills what it says it killed ----------------------------------------
def _group_members(pgid: int) -> list[int]:
    """The live processes of group `pgid` (a zombie waiting for init to reap it is gone)."""
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return members


def test_a_timeout_kills_a_command_that_ignores_sigterm_and_the_one_it_starts_next(tmp_path, write_workflow):
    flow = write_workflow("""
        name: stubborn
        tasks:
          - id: hold
            plugin: shell
            timeout: 2
            config: {command: "trap '' TERM; echo $$ > pid; sleep 1000; sleep 1000"}
    """)
    done = run_cli("run", str(flow), "--quiet", cwd=tmp_path)
    shell = int((tmp_path / "pid").read_text())
    try:
        assert done.returncode == 1, done.stderr
        record = records(latest_run_dir(tmp_path / "logs"))["hold"]
        assert record["error"]["type"] == "Timeout" and "killed" in record["error"]["message"]
        # Killed means gone once opflow has exited: the shell and the sleep it started after the first died.
        assert gone(shell), f"the command's shell {shell} outlived its timeout"
        assert _group_members(shell) == []
    finally:
        for pid in _group_members(shell):
            os.kill(pid, signal.SIGKILL)


# -- the folder opflow is started from ---------------------------------------------
def test_modules_in_the_current_folder_do_not_shadow_the_workers_own(tmp_path, write_workflow):
    # A `random.py`, a `socket.py` and a clone named opflow/ where the user stands; the
    # workflow elsewhere. The coordinator (the console script) never looks there; its
    # helper processes and workers must not either, and the tasks get the user's environment.
    here = tmp_path / "home"
    (here / "opflow").mkdir(parents=True)
    (here / "opflow" / "__init__.py").write_text("raise ImportError('the clone in the current folder')\n")
    for name in ("random", "socket", "selectors"):
        (here / f"{name}.py").write_text(f"raise SystemExit('the {name}.py in the current folder')\n")
    (tmp_path / "work").mkdir()
    flow = write_workflow("""
        name: elsewhere
        tasks:
          - {id: a, plugin: shell, config: {command: "echo ${PYTHONSAFEPATH:-unset}"}}
          - {id: b, plugin: python, config: {function: "os:getcwd"}, depends_on: [a]}
    """, name="work/flow.yaml")
    opflow = Path(sys.executable).with_name("opflow")
    done = subprocess.run([str(opflow), "run", str(flow), "--log-dir", str(tmp_path / "logs")], cwd=here,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["a"]["result"]["stdout"].strip() == "unset"
    assert tasks["b"]["result"] == str(here)  # the workers still run in the folder opflow was started from


# -- --quiet: nothing when every task succeeds, a failure in a few lines -------------
def test_quiet_prints_nothing_for_a_retry_that_heals(tmp_path, write_workflow, faults):
    flow = write_workflow(f"""
        name: heals
        tasks:
          - {{id: flaky, plugin: python, retries: 2, config: {{function: "faults:fail_until", args: ["{tmp_path / 'n'}", 1]}}}}
    """)
    done = run_cli("run", str(flow), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert records(latest_run_dir(tmp_path / "logs"))["flaky"]["attempts"] == 2  # it did retry


def test_quiet_shows_the_retries_of_a_task_that_fails_in_the_end(tmp_path, write_workflow, faults):
    flow = write_workflow(f"""
        name: fails
        tasks:
          - {{id: flaky, plugin: python, retries: 1, config: {{function: "faults:fail_until", args: ["{tmp_path / 'n'}", 5]}}}}
    """)
    done = run_cli("run", str(flow), "--quiet", cwd=tmp_path)
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "retrying  flaky" in out and "attempt 1 fails on purpose" in out
    assert out.index("retrying  flaky") < out.index("FAILED    flaky")


def test_quiet_counts_the_tasks_a_stopped_run_cancelled_in_one_line(tmp_path, write_workflow, faults):
    marker, go = tmp_path / "started", tmp_path / "never"
    queued = "\n".join(f'          - {{id: q{i}, plugin: python, config: {{function: "faults:ok"}}}}' for i in range(30))
    flow = write_workflow(f"""
        name: stopped
        tasks:
          - {{id: first, plugin: python, config: {{function: "faults:first_caller_waits", args: ["{marker}", "{go}"]}}}}
{queued}
    """)
    run = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--quiet", "--workers", "1"],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = signal_when(run, marker.exists, "the first task to start")
    assert run.returncode == 130
    statuses = [r["status"] for r in records(latest_run_dir(tmp_path / "logs")).values()]
    assert statuses.count("cancelled") >= 25  # most never started
    assert "cancelled" not in "".join(line for line in out.splitlines() if not line.count(" run "))  # no line each
    assert len(out.splitlines()) <= 3, out  # the contract's bound: the signal, the outcome, the record


# -- a full /dev/shm ----------------------------------------------------------------
def test_a_full_dev_shm_is_one_line_naming_it(tmp_path, write_workflow):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a private /dev/shm needs root and unshare")
    flow = write_workflow("""
        name: shm
        tasks:
          - {id: a, plugin: shell, config: {command: "echo a"}}
    """)
    # A private mount namespace, its own 64 KiB /dev/shm filled before opflow starts.
    script = ("mount -t tmpfs -o size=64k tmpfs /dev/shm && dd if=/dev/zero of=/dev/shm/fill bs=4k count=16 "
              f"2>/dev/null; exec {sys.executable} -m opflow run {flow}")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "/dev/shm" in lines[0], done.stderr
    assert run_dirs(tmp_path / "logs") == []  # nothing ran, no half a record


# -- a reference in a shell command is one word, or refused -------------------------
PAYLOAD = "$(touch PWNED)"
UNDONE = {  # where the user's own quoting undoes opflow's: refused at the command's line
    "double quotes": 'echo "{ref}"',
    "single quotes": "echo '{ref}'",
    "bash -c double": 'bash -c "echo {ref}"',
    "bash -c single": "bash -c 'echo {ref}'",
    "here-document": "cat <<EOF\n{ref}\nEOF\n",
    "inside words": 'echo "x{ref}y"',
}
SAFE = {  # a word of its own, or inside a command substitution: the value arrives as written
    "one reference": "{ref}",
    "a word": "printf '%s\\n' {ref}",
    "in $(...) in quotes": 'printf "%s\\n" "$(printf %s {ref})"',
    "after a comment line": "# say {ref}\nprintf '%s\\n' {ref}",
}
REFS = {  # each kind of reference, holding the payload
    "param": ("${params.v}", "params: {v: '%s'}" % PAYLOAD, ""),
    "item": ("${item}", "", "foreach: ['%s']" % PAYLOAD),
    "list param": ("${params.l}", "params: {l: ['%s']}" % PAYLOAD, ""),
    "mapping param": ("${params.m}", "params: {m: {k: '%s'}}" % PAYLOAD, ""),
}


def _quoting_flow(write_workflow, form: str, ref_kind: str):
    ref, params, foreach = REFS[ref_kind]
    command = form.format(ref=ref)
    return write_workflow("\n".join([
        "name: quoting", params, "tasks:", "  - id: say", "    plugin: shell",
        *(["    " + foreach] if foreach else []),
        "    config:", "      command: |-", *("        " + line for line in command.splitlines()),
    ]) + "\n")


@pytest.mark.parametrize("ref_kind", REFS)
@pytest.mark.parametrize("form", UNDONE)
def test_a_reference_where_quoting_is_undone_is_refused_at_its_line(tmp_path, write_workflow, form, ref_kind):
    flow = _quoting_flow(write_workflow, UNDONE[form], ref_kind)
    done = run_cli("run", str(flow), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{flow.name}:" in done.stderr and "task 'say'" in done.stderr and "sits inside" in done.stderr
    assert not (tmp_path / "PWNED").exists() and run_dirs(tmp_path / "logs") == []


@pytest.mark.parametrize("ref_kind", REFS)
@pytest.mark.parametrize("form", SAFE)
def test_a_reference_as_a_word_of_its_own_arrives_as_written(tmp_path, write_workflow, form, ref_kind):
    flow = _quoting_flow(write_workflow, SAFE[form], ref_kind)
    done = run_cli("run", str(flow), "--quiet", cwd=tmp_path)
    assert not (tmp_path / "PWNED").exists()
    if form == "one reference":  # the value is the whole command: a word the shell cannot find
        assert done.returncode == 1
        return
    assert done.returncode == 0, done.stderr
    task_ids = [t for t in records(latest_run_dir(tmp_path / "logs"))]
    out = "".join(records(latest_run_dir(tmp_path / "logs"))[t]["result"]["stdout"] for t in task_ids)
    assert PAYLOAD in out


# -- retries: only what an attempt could heal -------------------------------------------
MISCONFIGURED = {  # config, plugin, module or function: no attempt can go otherwise
    # (a module found nowhere is a validate error now: tests/test_spec.py)
    "missing function": '{plugin: python, config: {function: "faults:no_such_function"}}',
    "missing csv": '{plugin: csv_ingest, config: {path: "no_such.csv"}}',
    "missing cwd": '{plugin: shell, config: {command: "true", cwd: "no_such_dir"}}',
}
HEALABLE = {  # the task's own failure: retried
    "exit status": '{plugin: shell, config: {command: "exit 3"}}',
    "an exception": '{plugin: python, config: {function: "faults:raise_error"}}',
}


@pytest.mark.parametrize("case", [*MISCONFIGURED, *HEALABLE])
def test_a_misconfiguration_fails_at_once_and_a_tasks_own_failure_is_retried(tmp_path, write_workflow, faults, case):
    task = {**MISCONFIGURED, **HEALABLE}[case]
    flow = write_workflow(f"""
        name: retries
        defaults: {{retries: 2}}
        tasks:
          - {{id: t, {task[1:-1]}}}
    """)
    done = run_cli("run", str(flow), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    record = records(latest_run_dir(tmp_path / "logs"))["t"]
    if case in MISCONFIGURED:
        assert record["attempts"] == 1 and record["error"]["misconfigured"] is True
        assert "retrying" not in done.stdout + done.stderr
    else:
        assert record["attempts"] == 3 and "misconfigured" not in record["error"]


# -- resume reuses every task that succeeded, read downstream or not ------------------
def test_resume_reuses_a_succeeded_task_that_no_task_reads(tmp_path, write_workflow, faults):
    leaf, read, flaky = tmp_path / "leaf.count", tmp_path / "read.count", tmp_path / "flaky.count"
    flow = write_workflow(f"""
        name: leaves
        tasks:
          - {{id: leaf, plugin: python, config: {{function: "faults:counted", args: ["{leaf}"]}}}}
          - {{id: read, plugin: python, config: {{function: "faults:counted", args: ["{read}"]}}}}
          - {{id: flaky, plugin: python, config: {{function: "faults:fail_until", args: ["{flaky}", 1]}},
              depends_on: [read]}}
    """)
    assert run_cli("run", str(flow), "--keep-going", cwd=tmp_path).returncode == 1  # flaky fails once
    first = latest_run_dir(tmp_path / "logs")
    resumed = run_cli("resume", str(first), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["leaf"]["reused"] is True and tasks["read"]["reused"] is True
    assert tasks["flaky"]["status"] == "succeeded" and tasks["flaky"]["reused"] is False
    assert leaf.read_text() == "1" and read.read_text() == "1"  # neither ran again


# -- foreach at scale ---------------------------------------------------------------
def test_a_foreach_over_a_param_too_large_for_the_environment_runs(tmp_path, write_workflow):
    # 1,500 names of 100 characters: a 150 KB param, over Linux's 128 KiB for one
    # environment string. It used to fail every instance with "Argument list too long".
    names = [f"{i:04d}-" + "x" * 95 for i in range(1500)]
    flow = write_workflow("\n".join([
        "name: many", f"params: {{files: {json.dumps(names)}, tag: small}}", "tasks:",
        "  - id: each", "    plugin: shell", '    foreach: "${params.files}"',
        '    config: {command: "echo ${item} ${OPFLOW_PARAM_TAG:-none} ${OPFLOW_PARAM_FILES:-unset}"}',
    ]) + "\n")
    done = run_cli("run", str(flow), "--quiet", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert len(tasks) == 1500
    assert tasks["each[7]"]["result"]["stdout"] == f"{names[7]} small unset\n"  # small params still exported


def test_a_foreach_reading_another_foreach_costs_no_square(tmp_path, write_workflow):
    # 3,000 instances each depending on all 3,000 of another foreach: 9 million edges
    # when built as instances (1.9 GB). Validated within 400 MB of address space.
    n = 3000
    flow = write_workflow("\n".join([
        "name: square", f"params: {{files: {json.dumps([f'f{i}' for i in range(n)])}}}", "tasks:",
        '  - {id: a, plugin: python, foreach: "${params.files}", config: {function: "os:getpid"}}',
        '  - {id: b, plugin: python, foreach: "${params.files}", config: {function: "os:getpid"}, depends_on: [a]}',
    ]) + "\n")

    def small_address_space():
        limit = 400 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run([sys.executable, "-m", "opflow", "validate", str(flow)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, preexec_fn=small_address_space)
    assert done.returncode == 0, done.stderr
    assert f"{2 * n} tasks in 2 layers" in done.stdout + done.stderr


def test_each_instance_of_a_foreach_reads_every_instance_it_depends_on(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: groups
        params: {n: [1, 2, 3, 4]}
        tasks:
          - {id: a, plugin: python, foreach: "${params.n}", config: {function: "faults:ok", args: ["${item}"]}}
          - {id: b, plugin: python, foreach: "${params.n}", config: {function: "faults:value_of", args: [a]},
             depends_on: [a]}
    """)
    done = run_cli("run", str(flow), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tasks = records(latest_run_dir(tmp_path / "logs"))
    for i in range(4):  # the group, as the list of its instances' results, in order
        assert tasks[f"b[{i}]"]["result"] == {"a": [{"value": 1}, {"value": 2}, {"value": 3}, {"value": 4}]}


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "--timeout"])
def test_stopping_a_run_kills_every_running_command_even_one_ignoring_sigterm(tmp_path, write_workflow, how):
    tasks = "\n".join(f"          - {{id: s{i}, plugin: shell, config: {{command: \"trap '' TERM; echo $$ > pid{i}; "
                      f"sleep 1000; sleep 1000\"}}}}" for i in range(4))
    flow = write_workflow(f"""
        name: four
        tasks:
{tasks}
    """)
    pids = [tmp_path / f"pid{i}" for i in range(4)]
    extra = ["--timeout", "3s"] if how == "--timeout" else []
    run = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--workers", "4", "--quiet", *extra],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = ""
    if how == "--timeout":
        try:
            out, _ = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
    else:
        out = signal_when(run, lambda: all(p.exists() and p.read_text().strip() for p in pids),
                          "every command to start", getattr(signal, how))
    shells = [int(p.read_text()) for p in pids if p.exists() and p.read_text().strip()]
    try:
        assert len(shells) == 4
        left = [pid for shell in shells for pid in _group_members(shell)]
        described = []
        for pid in left:
            try:
                proc = psutil.Process(pid)
                described.append(f"{pid} {' '.join(proc.cmdline())} (parent {proc.ppid()}, {proc.status()})")
            except psutil.Error:
                described.append(f"{pid} (gone)")
        assert left == [], f"still running after opflow exited ({how}): {described}; output: {out[-600:]}"
    finally:
        for shell in shells:
            for pid in _group_members(shell):
                os.kill(pid, signal.SIGKILL)
