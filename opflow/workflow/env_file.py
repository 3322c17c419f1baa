"""The workflow key `env_file: PATH`: `KEY=VALUE` lines for `${env.KEY}`, every value secret.

The format is the common core of dotenv files: one `KEY=VALUE` a line, an optional
`export ` before the key, blank lines and `#` comment lines ignored, the value
optionally in single or double quotes (kept as written inside them; `\\"` and `\\\\`
inside double quotes), and an unquoted value ends at ` #` (a comment). Anything
else is a problem at its line: a file opflow half understood would hand a task the
wrong token.
"""
from __future__ import annotations

__all__ = ["read_env_file", "EnvFileProblem"]

import re
from pathlib import Path

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ENV_FILE_BYTES = 1 << 20


class EnvFileProblem(Exception):
    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def read_env_file(path: Path) -> tuple[dict[str, str], list[EnvFileProblem]]:
    """KEY -> value of each line, and the problems (a missing file is one, line None)."""
    try:
        if path.stat().st_size > MAX_ENV_FILE_BYTES:
            return {}, [EnvFileProblem("larger than 1 MB: not an env file")]
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, [EnvFileProblem("no such file")]
    except UnicodeDecodeError as exc:
        return {}, [EnvFileProblem(f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    except OSError as exc:
        return {}, [EnvFileProblem(f"cannot read: {exc.strerror or exc}")]
    values: dict[str, str] = {}
    first: dict[str, int] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            key, value = _parse_line(stripped)
        except EnvFileProblem as problem:
            problem.line = number
            problems.append(problem)
            continue
        if key in first:
            problems.append(EnvFileProblem(f"'{key}' is set twice (first on line {first[key]})", number))
            continue
        first[key] = number
        values[key] = value
    return values, problems


def _parse_line(line: str) -> tuple[str, str]:
    if line.startswith("export "):
        line = line[len("export "):].lstrip()
    key, sep, rest = line.partition("=")
    key = key.strip()
    if not sep:
        # Never the line itself in the message: it may be a secret pasted without its key.
        raise EnvFileProblem("expected KEY=VALUE")
    if not _KEY.fullmatch(key):
        raise EnvFileProblem("expected KEY=VALUE, KEY a name of letters, digits and _ (not starting with a digit)")
    rest = rest.strip()
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        value, end = _quoted(rest, quote)
        after = rest[end:].strip()
        if after and not after.startswith("#"):
            raise EnvFileProblem(f"'{key}': text after the closing quote")
        return key, value
    value = rest.split(" #", 1)[0].rstrip()
    if value.startswith("#"):
        value = ""
    return key, value


def _quoted(text: str, quote: str) -> tuple[str, int]:
    """The value inside the quotes starting text, and the index after the closing one."""
    out = []
    i = 1
    while i < len(text):
        char = text[i]
        if quote == '"' and char == "\\" and i + 1 < len(text) and text[i + 1] in ('"', "\\"):
            out.append(text[i + 1])
            i += 2
            continue
        if char == quote:
            return "".join(out), i + 1
        out.append(char)
        i += 1
    raise EnvFileProblem(f"an opening {quote} with no closing one on the line")
