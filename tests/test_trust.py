"""Nobody else gets in: what another process can reach of a run cannot change what the run records."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from helpers import latest_run_dir, records, wait_for

#: A process of the same user, not one of the pool's workers: it finds the outcome channel's
#: abstract socket in /proc/net/unix and sends an Outcome claiming every low token succeeded.
FORGER = textwrap.dedent("""
    import socket, sys
    from multiprocessing.connection import Connection
    from opflow.attempt import Outcome

    names = [line.split()[-1][1:] for line in open("/proc/net/unix").read().splitlines()[1:]
             if f"@opflow-outcomes-{sys.argv[1]}-" in line]
    sent = 0
    for name in names:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect("\\0" + name)
        conn = Connection(sock.detach())
        for token in range(1, 20):
            try:
                conn.send(Outcome(token=token, ok=True, result={"forged": True}, started_at=1.0, finished_at=1.0))
            except OSError:  # the channel hung up on us
                break
            sent += 1
        conn.close()
    print(sent)
""")




def test_a_process_of_the_same_user_cannot_forge_an_outcome(tmp_path, write_workflow, faults):
    marker, go = tmp_path / "started", tmp_path / "go"
    flow = write_workflow(f"""
        name: forged
        tasks:
          - {{id: wait, plugin: python, config: {{function: "faults:first_caller_waits", args: ["{marker}", "{go}"]}}}}
    """)
    run = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--quiet"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker.exists, 60, "the task to start")
        forged = subprocess.run([sys.executable, "-c", FORGER, str(run.pid)], capture_output=True, text=True,
                                timeout=60)
        go.touch()
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert forged.returncode == 0, forged.stderr
    assert int(forged.stdout) > 0  # the forger reached the channel: the refusal below is the channel's doing
    assert run.returncode == 0, err
    record = records(latest_run_dir(tmp_path / "logs"))["wait"]
    assert record["result"] == {"waited": True}
    assert json.dumps(record).count("forged") == 0
