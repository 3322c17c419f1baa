"""A Dask cluster as a user has one: started by hand, without the shared disk, over SSH, or from a spec.

Schedulers and workers are real processes started from their own folders; a worker
"without the shared disk" runs in a private mount namespace with an empty tmpfs over
the workflow's folder (and so over the default ./logs inside it). Every process a
test starts is stopped by pid (helpers.HandStartedCluster, the sshd fixture).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import (HandStartedCluster, check_unshare, latest_run_dir, records, run_cli, run_json, wait_for,
                     write)

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed: pip install 'opflow-runner[dask]'")

from opflow.rundir.results_log import RESULTS_FILE, read_results  # noqa: E402


def _opflow(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    import os

    return subprocess.Popen([sys.executable, "-m", "opflow", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _ours_on_scheduler(address: str) -> int:
    """How many of opflow's tasks the scheduler holds now (the coordinator's window)."""
    with distributed.Client(address, timeout=30, set_as_default=False) as client:
        return client.run_on_scheduler(
            lambda dask_scheduler: sum(str(key).startswith("opflow-") for key in dask_scheduler.tasks))


def _outcomes(run_dir: Path) -> dict:
    """task_id -> (status, result): what must be the same on the process pool and on a cluster."""
    return {task_id: (record["status"], record.get("result")) for task_id, record in records(run_dir).items()}


# -- item 5: the window, run.json's workers, the dashboard, --scheduler-file -----------------
def test_the_window_follows_the_clusters_threads_as_workers_join(tmp_path):
    gate = tmp_path / "go"
    tasks = "".join(f"  - {{id: t{n}, plugin: python, config: {{function: 'faults:wait_for_file', "
                    f"args: ['{gate}', 300]}}}}\n" for n in range(24))
    flow = write(tmp_path, "flow.yaml", "name: window\ntasks:\n" + tasks)
    (tmp_path / "faults.py").write_text((Path(__file__).parent / "faults.py").read_text())
    with HandStartedCluster(tmp_path, [[]]) as cluster:
        run = _opflow("run", str(flow), "--executor", "dask", "--scheduler", cluster.address, "--quiet", cwd=tmp_path)
        try:
            # One thread: at least 8 in flight (four times the threads, at least 8).
            wait_for(lambda: _ours_on_scheduler(cluster.address) == 8, 60, "8 tasks on the scheduler")
            cluster.add_worker(["--nthreads", "3"])
            # Four threads now: the window is re-read, 16 in flight.
            wait_for(lambda: _ours_on_scheduler(cluster.address) == 16, 60, "16 tasks on the scheduler")
            gate.touch()
            out, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=30)
    assert run.returncode == 0, out + err
    doc = run_json(latest_run_dir(tmp_path / "logs"))
    # The cluster's threads when the run started, not this machine's CPU count.
    assert doc["workers"] == 1 and doc["cluster"]["threads"] == 1 and doc["cluster"]["workers"] == 1


def test_the_dashboard_link_is_printed_and_recorded_and_a_scheduler_file_names_the_scheduler(tmp_path):
    flow = write(tmp_path, "flow.yaml", """
        name: dash
        tasks:
          - {id: a, plugin: shell, config: {command: "echo a"}}
    """)
    with HandStartedCluster(tmp_path, [[], ["--nthreads", "2"]], dashboard=True) as cluster:
        shown = run_cli("run", "flow.yaml", "--scheduler-file", "scheduler.json", "--executor", "dask", cwd=tmp_path)
        quiet = run_cli("run", "flow.yaml", "--scheduler-file", "scheduler.json", "--executor", "dask", "--quiet",
                        cwd=tmp_path)
        as_json = run_cli("run", "flow.yaml", "--scheduler-file", "scheduler.json", "--executor", "dask", "--json",
                          cwd=tmp_path)
    for done in (shown, quiet, as_json):
        assert done.returncode == 0, done.stdout + done.stderr
    cluster_doc = json.loads(as_json.stdout)["cluster"]
    link = cluster_doc["dashboard"]
    assert link and link.startswith("http://127.0.0.1:") and link.endswith("/status")
    assert cluster_doc == {"scheduler": cluster.address, "dashboard": link, "workers": 2, "threads": 3}
    assert json.loads(as_json.stdout)["workers"] == 3
    assert f"dashboard {link}" in shown.stdout
    assert "dashboard" not in quiet.stdout + quiet.stderr and "dashboard http" not in as_json.stderr


def _overlap_flow(folder: Path, key: str) -> Path:
    """Two tasks asking `key` that each wait (up to 3 s) to see the other running (its
    `started-*` file, removed as it ends): an `overlap-*` file says they ran at once."""
    wait = ("touch started-{me}; for i in $(seq 60); do [ -e started-{other} ] && break; sleep 0.05; done; "
            "if [ -e started-{other} ]; then touch overlap-{me}; fi; rm started-{me}")
    tasks = "".join(f"  - {{id: {me}, plugin: shell, {key}, config: {{command: '{wait.format(me=me, other=other)}'}}}}\n"
                    for me, other in (("a", "b"), ("b", "a")))
    return write(folder, "flow.yaml", "name: asks\ntasks:\n" + tasks)


@pytest.mark.parametrize("key, declared", [("cpus: 2", "cpus=2"), ("memory: 200MB", "MEMORY=300e6")])
def test_cpus_and_memory_become_the_worker_resources_it_declares(tmp_path, key, declared):
    """A worker of 2 threads declaring `--resources`: two tasks asking for all of it run one
    at a time there (the coordinator's own window, --workers 4, would let both go); the same
    worker declaring nothing runs them at once (the control: the tasks can tell)."""
    flow = _overlap_flow(tmp_path, key)
    for resources, overlaps in (([f"--resources", declared], False), ([], True)):
        for stale in tmp_path.glob("started-*"):
            stale.unlink()
        with HandStartedCluster(tmp_path, [["--nthreads", "2", *resources]]) as cluster:
            done = run_cli("run", str(flow), "--executor", "dask", "--scheduler", cluster.address, "--workers", "4",
                           cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert bool(list(tmp_path.glob("overlap-*"))) is overlaps, (resources, sorted(tmp_path.iterdir()))
        for seen in tmp_path.glob("overlap-*"):
            seen.unlink()


def test_a_missing_scheduler_file_is_exit_2_naming_it(tmp_path):
    write(tmp_path, "flow.yaml", "name: f\ntasks:\n  - {id: a, plugin: shell, config: {command: 'true'}}\n")
    done = run_cli("run", "flow.yaml", "--executor", "dask", "--scheduler-file", "nowhere.json", cwd=tmp_path)
    assert done.returncode == 2 and "nowhere.json: no such file" in done.stderr and "Traceback" not in done.stderr


# -- items 2 and 3: a worker without the shared disk -----------------------------------------
BLIND = """
    name: blind
    tasks:
      - {id: talk, plugin: shell, config: {command: "echo out-line; echo err-line >&2; test -e WORK/flow.yaml && echo SEES || echo BLIND"}}
      - {id: silent, plugin: shell, config: {command: "true"}}
      - {id: after, plugin: shell, config: {command: "echo after-talk"}, depends_on: [talk]}
      - {id: broken, plugin: shell, config: {command: "echo last-words; exit 3"}}
      - {id: big, plugin: shell, config: {command: "head -c 2200000 /dev/zero | tr '\\\\0' x | fold -w 99; echo LAST-LINE"}}
"""


def _blind_cluster(tmp_path: Path, work: Path) -> HandStartedCluster:
    """One worker, which cannot see `work` (the workflow's folder, and ./logs in it)."""
    check_unshare()
    return HandStartedCluster(tmp_path, [[]], hidden={0: [work]})


def test_a_worker_without_the_run_directory_runs_the_task_and_its_output_comes_back(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    write(work, "flow.yaml", BLIND.replace("WORK", str(work)))
    with _blind_cluster(tmp_path, work) as cluster:
        # The README's recipe: a scheduler address and the default (relative) log dir.
        done = run_cli("run", "flow.yaml", "--executor", "dask", "--scheduler", cluster.address, "--keep-going",
                       cwd=work)
    assert done.returncode == 1, done.stdout + done.stderr
    run_dir = latest_run_dir(work / "logs")
    log = (run_dir / "tasks" / "talk.log").read_text()
    assert "out-line" in log and "err-line" in log and "BLIND" in log and "=== attempt 1" in log
    assert not (run_dir / "tasks" / "silent.log").exists()  # a silent task keeps no log, as on the pool
    assert "last-words" in (run_dir / "tasks" / "broken.log").read_text()
    # 2.2 MB of output: what comes back is bounded, its head line and its tail kept.
    big = (run_dir / "tasks" / "big.log").read_bytes()
    assert big.startswith(b"=== attempt 1") and big.rstrip().endswith(b"LAST-LINE") and len(big) <= 1024 * 1024 + 4096
    assert b"bytes of output cut here on the dask worker" in big
    tasks = records(run_dir)
    assert "last-words" in tasks["broken"]["error"]["log_tail"]
    assert all(r["attempt_log"][0]["attempt"] == 1 for r in tasks.values())  # no first attempt lost on a spool
    kept = set(read_results(str(run_dir / RESULTS_FILE)))  # written where the run directory is
    assert "talk" in kept
    # Parity: the process pool records the same statuses and results (the pool sees the folder: SEES).
    pool = run_cli("run", "flow.yaml", "--keep-going", cwd=work)
    assert pool.returncode == 1, pool.stdout + pool.stderr
    on_pool = _outcomes(latest_run_dir(work / "logs"))
    assert set(read_results(str(latest_run_dir(work / "logs") / RESULTS_FILE))) == kept
    on_cluster = _outcomes(run_dir)
    on_pool["talk"] = (on_pool["talk"][0], json.loads(json.dumps(on_pool["talk"][1]).replace("SEES", "BLIND")))
    assert on_cluster == on_pool


TOOLS = """
    from shout_words import shout  # a neighbour beside the workflow: shipped with it

    def loud(context):
        return shout(context.task_id)
"""


def test_modules_beside_the_workflow_are_shipped_to_a_worker_that_cannot_see_them(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    write(work, "tools.py", TOOLS)
    write(work, "shout_words.py", "def shout(text):\n    return text.upper() + '!'\n")
    coordinator_only = tmp_path / "coordinator-only"  # installed here, not on the workers
    write(coordinator_only, "only_here.py", "def value():\n    return 1\n")
    write(work, "flow.yaml", """
        name: shipped
        tasks:
          - {id: first, plugin: python, config: {function: "tools:loud"}}
          - {id: second, plugin: python, config: {function: "tools:loud"}, depends_on: [first]}
          - {id: lonely, plugin: python, config: {function: "only_here:value"}}
    """)
    env = {"PYTHONPATH": str(coordinator_only)}
    with _blind_cluster(tmp_path, work) as cluster:
        done = run_cli("run", "flow.yaml", "--executor", "dask", "--scheduler", cluster.address, "--keep-going",
                       cwd=work, env=env)
        # Changed between runs: shipped again (once per content change).
        write(work, "shout_words.py", "def shout(text):\n    return text.lower() + '?'\n")
        again = run_cli("run", "flow.yaml", "--executor", "dask", "--scheduler", cluster.address, "--keep-going",
                        cwd=work, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    run_dirs = sorted(p for p in (work / "logs").iterdir() if p.is_dir() and not p.name.startswith("."))
    tasks = records(run_dirs[0])
    assert tasks["first"]["result"] == "FIRST!" and tasks["second"]["result"] == "SECOND!", tasks
    message = tasks["lonely"]["error"]["message"]
    assert "only_here" in message and f"on dask worker {cluster.address.rsplit(':', 1)[0]}" in message
    assert "host " in message
    assert records(run_dirs[1])["first"]["result"] == "first?"
    assert again.returncode == 1
    # Parity on the process pool, where only_here is importable (PYTHONPATH reaches the pool's workers).
    write(work, "shout_words.py", "def shout(text):\n    return text.upper() + '!'\n")
    pool = run_cli("run", "flow.yaml", "--keep-going", cwd=work, env=env)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    on_pool = _outcomes(latest_run_dir(work / "logs"))
    assert {t: on_pool[t] for t in ("first", "second")} == {t: _outcomes(run_dirs[0])[t] for t in ("first", "second")}


# -- item 7: clusters started for the run ----------------------------------------------------
THREE = """
    name: three
    tasks:
      - {id: a, plugin: python, config: {function: "faults:ok", args: [1]}}
      - {id: b, plugin: python, config: {function: "faults:add_upstream"}, depends_on: [a]}
      - {id: c, plugin: shell, config: {command: "echo c"}, depends_on: [a]}
"""


def _three(folder: Path) -> Path:
    (folder / "faults.py").write_text((Path(__file__).parent / "faults.py").read_text())
    return write(folder, "flow.yaml", THREE)


def _parity(folder: Path, cluster_run: Path) -> None:
    pool = run_cli("run", "flow.yaml", "--executor", "process", cwd=folder)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    assert _outcomes(cluster_run) == _outcomes(latest_run_dir(folder / "logs"))


def test_a_cluster_from_a_spec_file_is_started_for_the_run_and_records_as_the_pool_does(tmp_path):
    _three(tmp_path)
    write(tmp_path, "cluster.yaml", """
        class: distributed.LocalCluster
        kwargs: {n_workers: 0, threads_per_worker: 1, processes: true, host: 127.0.0.1, dashboard_address: null}
        adapt: {minimum: 0, maximum: 2}
    """)
    done = run_cli("run", "flow.yaml", "--cluster", "cluster.yaml", cwd=tmp_path)  # --cluster implies dask
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    doc = run_json(run_dir)
    assert doc["executor"] == "dask" and doc["cluster"]["scheduler"].startswith("tcp://127.0.0.1:")
    # Adaptive from 0: no worker at the start; the record still reads (workers >= 1).
    assert doc["cluster"]["threads"] == 0 and doc["workers"] == 1
    shown = run_cli("show", str(run_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    _parity(tmp_path, run_dir)


@pytest.mark.parametrize("args, says", [
    (["--adapt", "0:4"], "--adapt 0:4: only with --cluster"),
    (["--cluster", "cluster.yaml", "--adapt", "4:1"], "--adapt 4:1: write MIN:MAX"),
    (["--cluster", "cluster.yaml", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler and --cluster"),
    (["--cluster", "cluster.yaml", "--executor", "thread"], "--cluster goes with --executor dask"),
    (["--cluster", "jobqueue:nosuch"], "choose jobqueue:slurm"),
    (["--cluster", "ssh:onlyone"], "at least one worker's"),
    (["--cluster", "missing.yaml"], "not ssh:HOSTS, jobqueue:KIND nor a readable spec file"),
])
def test_cluster_options_misused_are_exit_2_saying_why(tmp_path, args, says):
    _three(tmp_path)
    write(tmp_path, "cluster.yaml", "class: distributed.LocalCluster\n")
    done = run_cli("run", "flow.yaml", *args, cwd=tmp_path)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "logs").exists() or not list((tmp_path / "logs").glob("2*"))


def test_a_spec_file_with_an_unknown_key_or_class_is_exit_2_naming_the_file(tmp_path):
    _three(tmp_path)
    write(tmp_path, "typo.yaml", "class: distributed.LocalCluster\nkwarg: {}\n")
    write(tmp_path, "absent.yaml", "class: dask_nowhere.Cluster\n")
    typo = run_cli("run", "flow.yaml", "--cluster", "typo.yaml", cwd=tmp_path)
    absent = run_cli("run", "flow.yaml", "--cluster", "absent.yaml", cwd=tmp_path)
    assert typo.returncode == 2 and "typo.yaml: unknown key(s) kwarg" in typo.stderr, typo.stderr
    assert absent.returncode == 2 and "absent.yaml: class dask_nowhere.Cluster" in absent.stderr
    assert "pip install dask-nowhere" in absent.stderr


def test_a_missing_batch_command_is_one_line_naming_it(tmp_path):
    _three(tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    done = run_cli("run", "flow.yaml", "--cluster", "jobqueue:slurm", "--adapt", "0:4", cwd=tmp_path,
                   env={"PATH": str(empty)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "opflow: error: --cluster jobqueue:slurm: the batch command 'sbatch' is not on PATH "
        "(run opflow on a machine that submits slurm jobs)"]


@pytest.mark.parametrize("spec, module, extra", [("ssh:h1,h2", "asyncssh", "ssh"),
                                                ("jobqueue:pbs", "dask_jobqueue", "jobqueue")])
def test_a_missing_cluster_package_is_exit_2_with_the_pip_command(here, monkeypatch, spec, module, extra):
    from helpers import invoke

    flow = _three(here)
    monkeypatch.setitem(sys.modules, module, None)  # import fails, as where the extra is not installed
    done = invoke("run", flow, "--cluster", spec, "--adapt", "0:2")
    assert done.exit_code == 2, done.output
    assert f"pip install 'opflow-runner[{extra}]'" in done.output


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    """An sshd on a free 127.0.0.1 port with its own host key, and a HOME whose ~/.ssh (config,
    key, known_hosts) reaches it as `ssh 127.0.0.1` would: yields that HOME. Stopped by pid."""
    from opflow.procs import kill_tree

    sshd_binary = Path("/usr/sbin/sshd")
    assert sshd_binary.exists(), "this test needs Debian's openssh-server (.ci/run installs it)"
    assert Path("/run/sshd").is_dir(), "sshd needs its privilege separation folder: mkdir -p /run/sshd (.ci/run does)"
    home, remote_tmp = tmp_path / "home", tmp_path / "remote-tmp"
    (home / ".ssh").mkdir(parents=True)
    remote_tmp.mkdir()
    for key in (tmp_path / "host_key", home / ".ssh" / "id_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    (tmp_path / "authorized_keys").write_text((home / ".ssh" / "id_ed25519.pub").read_text())
    port = _free_port()
    write(tmp_path, "sshd_config", f"""
        Port {port}
        ListenAddress 127.0.0.1
        HostKey {tmp_path / 'host_key'}
        AuthorizedKeysFile {tmp_path / 'authorized_keys'}
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        StrictModes no
        PidFile none
        PermitRootLogin prohibit-password
        SetEnv TMPDIR={remote_tmp}
    """)
    write(home / ".ssh", "config", f"""
        Host 127.0.0.1
          Port {port}
          IdentityFile {home / '.ssh' / 'id_ed25519'}
          UserKnownHostsFile {home / '.ssh' / 'known_hosts'}
    """)
    host_key = " ".join((tmp_path / "host_key.pub").read_text().split()[:2])
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    log = tmp_path / "sshd.log"
    with open(log, "wb") as handle:
        daemon = subprocess.Popen([str(sshd_binary), "-D", "-e", "-f", str(tmp_path / "sshd_config")],
                                  stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: b"Server listening" in log.read_bytes() or daemon.poll() is not None, 30, "sshd to listen")
        assert daemon.poll() is None, log.read_text()
        yield home
    finally:
        kill_tree(daemon.pid, grace=5.0)  # with its sessions' processes (scheduler, nanny, worker) if any are left
        daemon.wait(timeout=10)


def test_an_ssh_cluster_is_started_for_the_run_and_records_as_the_pool_does(tmp_path, sshd):
    _three(tmp_path)
    # The first host runs the scheduler, the second a worker; ~/.ssh/config gives port and key.
    done = run_cli("run", "flow.yaml", "--cluster", "ssh:127.0.0.1,127.0.0.1", cwd=tmp_path, env={"HOME": str(sshd)},
                   timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    doc = run_json(run_dir)
    assert doc["executor"] == "dask" and doc["cluster"]["workers"] == 1 and doc["cluster"]["threads"] == 1
    assert "distributed.deploy.ssh - INFO" not in done.stdout + done.stderr  # the remote INFO lines stay quiet
    _parity(tmp_path, run_dir)


def test_the_readmes_cluster_recipe_works_verbatim_with_the_default_log_dir(tmp_path):
    import os
    import re
    import shlex
    import shutil

    from helpers import REPO
    from opflow.procs import kill_tree

    section = (REPO / "README.md").read_text(encoding="utf-8").split("## On a cluster", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.strip().splitlines()]
    assert [line.split()[:2] for line in lines] == [["dask", "scheduler"], ["dask", "worker"], ["opflow", "run"]]
    (tmp_path / "examples").mkdir()
    for name in ("workflow_example.yaml", "sample_data.csv"):
        shutil.copy(REPO / "examples" / name, tmp_path / "examples" / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    daemons = []
    try:
        for n, line in enumerate(lines[:2]):  # `... &`: in the background
            with open(tmp_path / f"daemon{n}.log", "wb") as log:
                daemons.append(subprocess.Popen(shlex.split(line.rstrip("&").strip()), cwd=tmp_path, env=env,
                                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            if n == 0:
                wait_for(lambda: (tmp_path / "sched.json").exists() and (tmp_path / "sched.json").stat().st_size,
                         60, "the scheduler file")
        address = json.loads((tmp_path / "sched.json").read_text())["address"]
        with distributed.Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        done = subprocess.run(shlex.split(lines[2]), cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=180)
    finally:
        for daemon in reversed(daemons):
            kill_tree(daemon.pid, grace=5.0)
            daemon.wait(timeout=10)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = run_json(latest_run_dir(tmp_path / "logs"))  # the default ./logs, here
    assert doc["executor"] == "dask" and doc["cluster"]["workers"] == 2 and doc["status"] == "succeeded"
