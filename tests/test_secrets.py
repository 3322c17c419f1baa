"""Secret params and env_file through the real CLI: no file of the run directory and no line
opflow prints holds a secret (split across output chunks, in a long line, in a result, in
argv), while the task itself gets the real value."""
from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path

import pytest

from helpers import latest_run_dir, records, run_cli, run_json, write

TOKEN = "tok-Sup3rSecret-0123456789"  # given by --param
ENV_SECRET = "env value with spaces #not-a-comment 42"  # given by the env_file (quoted)
FROM_ENV = "from-the-environment-77"  # the environment wins over the env_file, and stays secret

MODULE = '''
import hashlib, sys

def leak(token, out):
    # Halves with a flush between: two writes (to fd 1 in a pool worker); then a long line holding it thrice.
    sys.stdout.write(token[:7]); sys.stdout.flush()
    sys.stdout.write(token[7:] + "\\n"); sys.stdout.flush()
    print("x" * 70000 + token + "y" * 70000 + token + token)
    print(token[:3], file=sys.stderr, end="", flush=True)
    print(token[3:], file=sys.stderr)
    with open(out, "w") as handle:
        handle.write(hashlib.sha256(token.encode()).hexdigest())
    return {"token": token, "note": "before " + token + " after"}

def use(context):
    return len(context["py"]["token"])

def boom(token):
    raise ValueError("the server refused token " + token)
'''


def _flow(here: Path) -> Path:
    write(here, "leaky.py", MODULE)
    write(here, "secrets.env", f"""
        # the nightly job's credentials
        API_KEY="{ENV_SECRET}"
        export REGION=eu-west-1
        FROM_ENV=
    """)
    got = here / "got"
    return write(here, "flow.yaml", f"""
        name: secrets
        env_file: secrets.env
        params:
          token: {{default: "", secret: true}}
          rows: 3
        tasks:
          - id: split
            plugin: shell
            config:
              command: >-
                t=${{params.token}};
                printf '%s' "${{t%??????????}}"; sleep 0.2; printf '%s\\n' "${{t#????????????????}}";
                printf 'whole: %s\\n' ${{params.token}};
                printf '%s' ${{params.token}} | sha256sum | cut -c1-64 > {got}.shell
          - id: env
            plugin: shell
            config:
              command: "echo key=${{env.API_KEY}} from=${{env.FROM_ENV}} >&2;
                printf '%s' ${{env.API_KEY}} | sha256sum | cut -c1-64 > {got}.env;
                printf '%s' ${{env.FROM_ENV}} > {got}.from_env"
          - id: py
            plugin: python
            cache: true
            config: {{function: "leaky:leak", kwargs: {{token: "${{params.token}}", out: "{got}.py"}}}}
          - id: after
            plugin: python
            depends_on: [py]
            config: {{function: "leaky:use"}}
    """)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _files_holding(root: Path, secrets: list[str]) -> list[str]:
    """Every file under root whose bytes hold any of the secrets (or their JSON-escaped form)."""
    needles = [s.encode() for s in secrets] + [json.dumps(s)[1:-1].encode() for s in secrets]
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            data = path.read_bytes()
            found += [f"{path}: {n!r}" for n in needles if n in data]
    return found


@pytest.mark.parametrize("executor", ["process", "thread", "dask"])
def test_no_secret_in_the_run_directory_or_on_the_console_and_the_task_gets_it(here, executor):
    # `after` reads py's result: it is published, and it would be kept for resume if it held no secret.
    flow = _flow(here)
    result = run_cli("run", str(flow), "--param", f"token={TOKEN}", "--param", "rows=4", "--executor", executor,
                     "--workers", "2", cwd=here, env={"FROM_ENV": FROM_ENV})
    run_dir = latest_run_dir(here / "logs")
    tasks = records(run_dir)
    assert {t: r["status"] for t, r in tasks.items()} == {"split": "succeeded", "env": "succeeded",
                                                           "py": "succeeded", "after": "succeeded"}, [r["error"] for r in tasks.values()]
    assert tasks["after"]["result"] == len(TOKEN)
    # The tasks had the real values.
    assert (here / "got.shell").read_text().strip() == _sha(TOKEN)
    assert (here / "got.env").read_text().strip() == _sha(ENV_SECRET)
    assert (here / "got.py").read_text() == _sha(TOKEN)
    assert (here / "got.from_env").read_text() == FROM_ENV
    # Nothing opflow wrote or printed holds one.
    assert _files_holding(here / "logs", [TOKEN, ENV_SECRET, FROM_ENV]) == []
    for stream in (result.stdout, result.stderr):
        assert TOKEN not in stream and ENV_SECRET not in stream and FROM_ENV not in stream
    # Masked where they were.
    assert tasks["py"]["result"] == {"token": "***", "note": "before *** after"}
    log = (run_dir / "tasks" / "py.log").read_text()
    assert log.count("***") == 5 and "x" * 70000 + "***" + "y" * 70000 + "******" in log
    assert (run_dir / "tasks" / "split.log").read_text().count("***\n") == 2  # the halves, and whole
    assert "whole: ***" in (run_dir / "tasks" / "split.log").read_text()
    assert "key=*** from=***" in (run_dir / "tasks" / "env.log").read_text()
    doc = run_json(run_dir)
    assert "token=***" in doc["argv"] and f"token={TOKEN}" not in doc["argv"]
    assert doc["params"] == {"token": "***", "rows": 4}
    assert doc["secret_params"] == ["token"]
    assert doc["env_file"] == str(here / "secrets.env")


def test_json_show_and_report_hold_no_secret(here):
    flow = _flow(here)
    flow.write_text(flow.read_text() + textwrap.indent(textwrap.dedent("""
        - id: boom
          plugin: python
          config: {function: "leaky:boom", args: ["${params.token}"]}
    """), "  "))
    result = run_cli("run", str(flow), "--param", f"token={TOKEN}", "--json", cwd=here)
    assert result.returncode == 1
    assert "the server refused token ***" in result.stderr  # the failure, as the console tells it
    assert TOKEN not in result.stdout + result.stderr and ENV_SECRET not in result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["params"]["token"] == "***"
    run_dir = Path(doc["run_dir"])
    outputs = []
    for args in (["show", str(run_dir)], ["show", str(run_dir), "--json"], ["show", str(run_dir), "py"],
                 ["show", str(run_dir), "py", "--json"], ["show", str(run_dir), "split"],
                 ["show", str(run_dir), "boom"], ["runs", "--log-dir", str(here / "logs")],
                 ["report", str(run_dir), "-o", str(here / "report.html")]):
        shown = run_cli(*args, cwd=here)
        assert shown.returncode == 0, shown.stderr
        outputs.append(shown.stdout + shown.stderr)
    assert "***" in outputs[2]
    for text in outputs:
        assert TOKEN not in text and ENV_SECRET not in text
    assert _files_holding(here / "logs", [TOKEN, ENV_SECRET]) == []
    report = (here / "report.html").read_bytes()
    assert TOKEN.encode() not in report and ENV_SECRET.encode() not in report and b"***" in report


def _resumable(here: Path) -> Path:
    marker = here / "fail-b"
    marker.touch()
    count = here / "a.count"
    return write(here, "flow.yaml", f"""
        name: resume secrets
        params:
          token: {{default: "", secret: true}}
        tasks:
          - {{id: a, plugin: shell, config: {{command: "printf %s ${{params.token}} > {here / 'got'}; echo x >> {count}"}}}}
          - {{id: b, plugin: shell, depends_on: [a], config: {{command: "test ! -e {marker}"}}}}
    """)


def test_resume_compares_a_secret_by_its_digest(here):
    flow = _resumable(here)
    first = run_cli("run", str(flow), "--param", f"token={TOKEN}", cwd=here)
    assert first.returncode == 1, first.stderr
    (here / "fail-b").unlink()
    same = run_cli("run", str(flow), "--resume", "--param", f"token={TOKEN}", cwd=here)
    assert same.returncode == 0, same.stderr
    assert records(latest_run_dir(here / "logs"))["a"]["reused"] is True
    assert (here / "a.count").read_text().count("x") == 1
    other = run_cli("run", str(flow), "--resume", "--param", "token=another-token-value", cwd=here)
    assert other.returncode == 0, other.stderr
    doc = run_json(latest_run_dir(here / "logs"))
    assert doc["reused"] == [] and any("secret" in c for c in doc["resume_changes"])
    assert (here / "a.count").read_text().count("x") == 2
    assert _files_holding(here / "logs", [TOKEN, "another-token-value"]) == []


def test_resume_of_a_run_dir_never_hands_a_task_the_mask(here):
    flow = _resumable(here)
    first = run_cli("run", str(flow), "--param", f"token={TOKEN}", cwd=here)
    assert first.returncode == 1, first.stderr
    (here / "fail-b").unlink()
    resumed = run_cli("resume", str(latest_run_dir(here / "logs")), cwd=here)
    assert resumed.returncode == 0, resumed.stderr
    # Not given again, the secret param has its default: a change, so a reran with it (never with "***").
    assert (here / "got").read_text() == ""
    assert records(latest_run_dir(here / "logs"))["a"]["reused"] is False


def test_a_cache_key_holds_a_secret_by_its_digest(here):
    count = here / "n"
    flow = write(here, "flow.yaml", f"""
        name: cache secrets
        params:
          token: {{default: "", secret: true}}
        tasks:
          - {{id: a, plugin: shell, cache: true, config: {{command: "test -n ${{params.token}}; echo x >> {count}"}}}}
    """)
    for token in (TOKEN, TOKEN, "a-different-token"):
        result = run_cli("run", str(flow), "--param", f"token={token}", cwd=here)
        assert result.returncode == 0, result.stderr
    assert count.read_text().count("x") == 2  # the second run reused the first; the third's key differs
    assert _files_holding(here / "logs", [TOKEN, "a-different-token"]) == []


def test_bad_secret_declarations_and_env_files_are_validate_errors_at_their_line(here):
    write(here, "bad.env", """
        GOOD=some-value
        this line has no equals sign
        2BAD=x
    """)
    flow = write(here, "flow.yaml", """
        name: bad secrets
        env_file: bad.env
        params:
          token: {default: "", secret: "yes"}
          pin: {default: 0, secret: true}
          other: {defualt: "", secret: true}
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
    """)
    result = run_cli("validate", str(flow), cwd=here)
    assert result.returncode == 2
    err = result.stderr
    assert "flow.yaml:4: param 'token': 'secret' must be true or false" in err
    assert "flow.yaml:6: param 'other': unknown key 'defualt' (did you mean 'default'?)" in err
    assert f"{here / 'bad.env'}:2: env_file: expected KEY=VALUE" in err
    assert f"{here / 'bad.env'}:3: env_file: expected KEY=VALUE" in err
    assert "no equals sign" not in err and "Traceback" not in err
    flow.write_text(flow.read_text().replace("env_file: bad.env", "env_file: missing.env")
                    .replace('secret: "yes"', "secret: true").replace("defualt", "default"))
    result = run_cli("run", str(flow), "--param", "pin=not-a-number-but-secret", cwd=here)
    assert result.returncode == 2 and not (here / "logs").exists()
    assert "flow.yaml:2: env_file 'missing.env': no such file" in result.stderr
    assert "--param pin=***: expected an int" in result.stderr
    assert "not-a-number-but-secret" not in result.stderr + result.stdout
    flow.write_text(flow.read_text().replace("env_file: missing.env\n", ""))
    short = run_cli("run", str(flow), "--param", "token=abc", cwd=here)
    assert short.returncode == 2 and "--param token: a secret param's value must be at least 4" in short.stderr


def test_a_secret_number_or_mapping_is_masked_too(here):
    flow = write(here, "flow.yaml", f"""
        name: secret shapes
        params:
          pin: {{default: 0, secret: true}}
          creds: {{default: {{user: "", password: ""}}, secret: true}}
        tasks:
          - id: a
            plugin: shell
            config: {{command: "echo ${{params.pin}} ${{params.creds.user}} ${{params.creds.password}} > {here / 'got'}"}}
    """)
    result = run_cli("run", str(flow), "--param", "pin=98765432", "--param", "creds={user: someone-x, password: pw-4711-z}",
                     cwd=here)
    assert result.returncode == 0, result.stderr
    assert (here / "got").read_text() == "98765432 someone-x pw-4711-z\n"
    assert _files_holding(here / "logs", ["98765432", "someone-x", "pw-4711-z"]) == []
    assert run_json(latest_run_dir(here / "logs"))["params"] == {"pin": "***", "creds": {"user": "***", "password": "***"}}
