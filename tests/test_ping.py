"""--ping URL (contract v3, issue 24): the healthchecks convention through the real CLI, against a
local http.server on 127.0.0.1 in a thread: /start, then the URL on success or /fail on failure;
a silent or unreachable server never fails the run, and run.json records what each ping got."""
from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

from helpers import latest_run_dir, run_cli, run_json

OK = """
    name: pinged
    tasks:
      - {id: a, plugin: shell, config: {command: "echo hi"}}
"""
FAILING = """
    name: pinged
    tasks:
      - {id: a, plugin: shell, config: {command: "exit 4"}}
"""
#: A silent server makes each ping wait this long (seconds), not 10.
QUICK = {"OPFLOW_PING_TIMEOUT": "1"}


@pytest.fixture
def server():
    """(base URL, the paths requested in order) of a server on a free port, shut down after."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass  # not on the test's stderr

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_a_successful_run_pings_start_then_the_url(tmp_path, write_workflow, server):
    base, seen = server
    flow = write_workflow(OK)
    result = run_cli("run", str(flow), "--quiet", "--ping", f"{base}/5f2c-uuid?token=hush", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""  # a ping adds nothing to a quiet run's output
    assert seen == ["/5f2c-uuid/start?token=hush", "/5f2c-uuid?token=hush"]
    ping = run_json(latest_run_dir(tmp_path / "logs"))["ping"]
    assert ping["start"]["status"] == 200 and ping["finish"]["status"] == 200
    assert ping["finish"]["url"] == f"{base}/5f2c-uuid?***"  # a query may hold a token: not recorded
    assert "hush" not in json.dumps(ping)


def test_a_failing_run_pings_start_then_fail(tmp_path, write_workflow, server):
    base, seen = server
    flow = write_workflow(FAILING)
    result = run_cli("run", str(flow), "--quiet", "--ping", base, cwd=tmp_path)
    assert result.returncode == 1
    assert seen == ["/start", "/fail"]
    ping = run_json(latest_run_dir(tmp_path / "logs"))["ping"]
    assert ping["finish"]["url"] == f"{base}/fail" and ping["finish"]["status"] == 200


def test_a_server_that_never_answers_does_not_fail_the_run(tmp_path, write_workflow):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections queue in the kernel; none is ever answered
    try:
        flow = write_workflow(OK)
        result = run_cli("run", str(flow), "--quiet", "--ping", f"http://127.0.0.1:{silent.getsockname()[1]}",
                         cwd=tmp_path, env=QUICK)
    finally:
        silent.close()
    assert result.returncode == 0, result.stderr
    doc = run_json(latest_run_dir(tmp_path / "logs"))
    assert doc["status"] == "succeeded"
    for which in ("start", "finish"):
        assert "timed out" in doc["ping"][which]["error"], doc["ping"]
        assert doc["ping"][which]["seconds"] < 5  # the timeout, not a hang


def test_an_unreachable_server_does_not_fail_the_run(tmp_path, write_workflow):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flow = write_workflow(FAILING)
    result = run_cli("run", str(flow), "--quiet", "--ping", f"http://127.0.0.1:{port}", cwd=tmp_path, env=QUICK)
    assert result.returncode == 1  # the task's failure, not the ping's
    ping = run_json(latest_run_dir(tmp_path / "logs"))["ping"]
    assert "refused" in ping["start"]["error"].lower() and "refused" in ping["finish"]["error"].lower()
    assert ping["finish"]["url"].endswith("/fail")


def test_a_ping_url_that_is_not_http_is_a_usage_error(tmp_path, write_workflow):
    flow = write_workflow(OK)
    result = run_cli("run", str(flow), "--ping", "ftp://example.org/x", cwd=tmp_path)
    assert result.returncode == 2
    assert "--ping" in result.stderr and "http" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "logs").exists() or not any(p for p in (tmp_path / "logs").iterdir()
                                                        if not p.name.startswith("."))
