"""The README is a door and the manual's links hold (issue 17).

Every relative Markdown link in README.md and docs/*.md must point to a file that exists,
and a `#fragment` to a heading of that file (GitHub's anchors); the README stays short.
"""
from __future__ import annotations

import re
from pathlib import Path

from helpers import REPO

README_MAX_LINES = 250
#: Pages another change writes: a link to one is let through only while it does not exist yet.
WRITTEN_ELSEWHERE = {REPO / "docs" / "environment.md"}

_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~)")


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code, where links are links."""
    out, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "``", line))
    return "\n".join(out)


def _links(text: str) -> list[str]:
    return _LINK.findall(_prose(text))


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _broken(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    problems = []
    for target in _links(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not a file of this repository
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            if resolved not in WRITTEN_ELSEWHERE:
                problems.append(f"{page.relative_to(REPO)}: link to {target}: no such file")
            continue
        if fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved.read_text(encoding="utf-8")):
            problems.append(f"{page.relative_to(REPO)}: link to {target}: no such heading in {resolved.name}")
    return problems


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = _pages()
    assert len(pages) > 1, "docs/ has no pages"
    assert [p for page in pages for p in _broken(page)] == []


def test_the_readme_is_a_door_not_a_manual():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the manual belongs in docs/"


def test_the_quickstart_test_command_is_the_one_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    command = re.search(r'pip install -e "(\.\[[^\]]*\])" && python -m pytest -q', readme)
    assert command, "the README's second quickstart command is gone"
    assert f'pip install --quiet -e "{command.group(1)}"' in ci and "python -m pytest -q" in ci


def test_the_link_check_sees_a_broken_link_and_a_broken_anchor(tmp_path, monkeypatch):
    import sys

    module = sys.modules[__name__]
    fake = tmp_path / "repo"
    (fake / "docs").mkdir(parents=True)
    (fake / "docs" / "a.md").write_text("# A\n\n## Some `code` heading: here\n\n[ok](#some-code-heading-here)\n"
                                        "[in code is fine: `[x](nowhere.md)`]\n```\n[x](nowhere.md)\n```\n")
    (fake / "README.md").write_text("[a](docs/a.md#some-code-heading-here) [b](docs/b.md) [c](docs/a.md#nope) "
                                    "[w](https://example.com/x.md) [e](docs/environment.md)\n")
    monkeypatch.setattr(module, "REPO", fake)
    monkeypatch.setattr(module, "WRITTEN_ELSEWHERE", {fake / "docs" / "environment.md"})
    assert _broken(fake / "docs" / "a.md") == []
    assert _broken(fake / "README.md") == ["README.md: link to docs/b.md: no such file",
                                           "README.md: link to docs/a.md#nope: no such heading in a.md"]
