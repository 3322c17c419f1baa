"""Where in a shell command a `${...}` reference sits: is the quoting opflow adds undone there?

opflow shell-quotes every value it writes into a shell command (`'...'`). That holds only
where the shell reads the value as a word of its own. Inside the user's own quotes it
does not: `echo "${params.v}"` becomes `echo "'$(touch PWNED)'"`, and the shell runs the
`$(...)` inside the double quotes; `bash -c '... ${params.v} ...'` closes the user's
single quotes around the value; a here-document's body expands `$(...)` whatever quotes
it holds. So a reference in any of those places is refused when the workflow is read.

A small scanner of POSIX sh quoting, enough to tell: single and double quotes, backslash
escapes, `$(...)` and backticks (each a new command, where quoting works again), comments
and here-documents. It does not run the command and never sees the values.
"""
from __future__ import annotations

__all__ = ["undone_quoting_at"]

import re

_HEREDOC = re.compile(r"<<-?[ \t]*(?:'([^'\n]*)'|\"([^\"\n]*)\"|\\?([A-Za-z0-9_.-]+))")


def undone_quoting_at(command: str, positions: list[int]) -> dict[int, str]:
    """For each position (the `$` of a reference) that sits where the shell would undo
    opflow's quoting: what it sits inside ("double quotes", "single quotes", "a here-document")."""
    wanted = sorted(set(positions))
    found: dict[int, str] = {}
    stack = ["command"]  # command contexts ("command...": top level, $(, (, backticks), "'", '"'
    heredocs: list[str] = []  # delimiters whose bodies start at the next newline
    i, n = 0, len(command)
    while i < n and wanted:
        while wanted and wanted[0] < i:  # passed over (inside an escape): not a reference
            wanted.pop(0)
        if wanted and wanted[0] == i:
            context = stack[-1]
            if context in ("'", '"'):
                found[i] = "single quotes" if context == "'" else "double quotes"
            wanted.pop(0)
        c = command[i]
        context = stack[-1]
        if context == "'":
            if c == "'":
                stack.pop()
            i += 1
            continue
        if c == "\\":
            i += 2
            continue
        if context == '"':
            if c == '"':
                stack.pop()
            elif command.startswith("$(", i):
                stack.append("command")
                i += 2
                continue
            elif c == "`":
                stack.append("command`")
            i += 1
            continue
        # a command context
        if c == "'" or c == '"':
            stack.append(c)
        elif command.startswith("$(", i):
            stack.append("command")
            i += 2
            continue
        elif c == "(":
            stack.append("command(")  # a subshell: its `)` must not close an enclosing $(
        elif c == ")" and len(stack) > 1 and stack[-1] in ("command", "command("):
            stack.pop()
        elif c == "`":
            if stack[-1] == "command`":
                stack.pop()
            else:
                stack.append("command`")
        elif c == "#" and (i == 0 or command[i - 1] in " \t\n;&|("):
            end = command.find("\n", i)  # a comment: nothing in it runs
            i = n if end < 0 else end
            continue
        elif command.startswith("<<", i) and not command.startswith("<<<", i):
            match = _HEREDOC.match(command, i)
            if match:
                heredocs.append(next(g for g in match.groups() if g is not None))
                i = match.end()
                continue
        elif c == "\n" and heredocs:
            i = _skip_bodies(command, i + 1, heredocs, wanted, found)
            heredocs = []
            continue
        i += 1
    return found


def _skip_bodies(command: str, start: int, delimiters: list[str], wanted: list[int], found: dict[int, str]) -> int:
    """Past the here-document bodies that start at `start`; references in them are refused."""
    i = start
    for delimiter in delimiters:
        while i < len(command):
            end = command.find("\n", i)
            end = len(command) if end < 0 else end
            line = command[i:end]
            if line.strip("\t") == delimiter:
                i = end + 1
                break
            while wanted and wanted[0] < end:
                if wanted[0] >= i:
                    found[wanted[0]] = "a here-document"
                wanted.pop(0)
            i = end + 1
    return i
