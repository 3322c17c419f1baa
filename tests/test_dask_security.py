"""Nobody else gets in: another local user cannot run code on the Dask cluster opflow starts.

The intruder is a real second user (made with useradd, removed after), in a process that
imports distributed as root and then drops to that user's uid before it connects: the
interpreter lives in root's 0700 home, so it could not be started as that user. The same
intruder is shown to succeed against a cluster with Dask's default security, so a refusal
below is the cluster's doing, not a broken intruder.
"""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed: pip install 'opflow-runner[dask]'")

from helpers import latest_run_dir, wait_for  # noqa: E402

INTRUDER = "opflow-intruder"

#: Connect to ADDRESS as another user and run a function that writes PROOF; print what happened.
ATTACK = textwrap.dedent("""
    import os, sys
    from distributed import Client
    from distributed.security import Security
    uid, gid, proof = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    addresses = sys.argv[4:]
    own_certificate = Security.temporary()  # an intruder can make a certificate, just not the run's
    os.setgroups([]); os.setgid(gid); os.setuid(uid)

    def plant(path):
        with open(path, "w") as f:
            f.write(str(os.getuid()))
        return os.getuid()

    for address in addresses:
        security = own_certificate if address.startswith("tls://") else None
        try:
            with Client(address, timeout=8, set_as_default=False, security=security) as client:
                print("RAN", address, client.submit(plant, proof, pure=False).result(timeout=20), flush=True)
        except Exception as exc:
            print("REFUSED", address, type(exc).__name__, flush=True)
""")


@pytest.fixture
def intruder():
    if os.geteuid() != 0:
        pytest.skip("making a second user needs root")
    made = False
    try:
        pwd.getpwnam(INTRUDER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER], check=True)
        made = True
    user = pwd.getpwnam(INTRUDER)
    yield user
    if made:
        subprocess.run(["userdel", INTRUDER], check=True)


def _attack(user, proof, *addresses) -> str:
    done = subprocess.run([sys.executable, "-c", ATTACK, str(user.pw_uid), str(user.pw_gid), str(proof), *addresses],
                          capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def _port(address: str) -> str:
    return address.rsplit(":", 1)[1]


def test_the_intruder_runs_code_on_a_cluster_with_dasks_default_security(tmp_path, intruder):
    from distributed import LocalCluster

    proof = tmp_path / "PLANTED"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1", protocol="tcp://",
                      dashboard_address=None) as cluster:
        said = _attack(intruder, proof, cluster.scheduler_address)
    assert "RAN" in said, said
    assert proof.read_text() == "0"  # the intruder's function ran as the cluster's user (root here)


def test_another_user_cannot_run_code_on_the_cluster_opflow_starts(tmp_path, write_workflow, faults, intruder):
    marker, go, proof = tmp_path / "started", tmp_path / "go", tmp_path / "PLANTED"
    flow = write_workflow(f"""
        name: guarded
        tasks:
          - {{id: wait, plugin: python, config: {{function: "faults:first_caller_waits", args: ["{marker}", "{go}"]}}}}
    """)
    run = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--executor", "dask", "--workers", "1",
                            "--quiet"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker.exists, 120, "the run's task to start on the cluster")
        scheduler = json.loads((latest_run_dir(tmp_path / "logs") / "run.json").read_text())["scheduler"]
        assert scheduler.startswith("tls://127.0.0.1:"), scheduler
        port = _port(scheduler)
        said = _attack(intruder, proof, f"tcp://127.0.0.1:{port}", f"tls://127.0.0.1:{port}")
        go.touch()
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert said.count("REFUSED") == 2 and "RAN" not in said, said
    assert not proof.exists()
    assert run.returncode == 0, err  # the run went on, undisturbed
