"""Every Markdown file of the repository closes its code fences (one that does not turns the rest of the page
into code on every renderer)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = {".venv", ".git", "runs", "site", "node_modules", ".pytest_cache"}
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def markdown_files() -> list[Path]:
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED]
        files += [Path(folder) / n for n in names if n.endswith(".md")]
    return sorted(files)


def unclosed_fence(text: str) -> int | None:
    """The line of a code fence never closed (CommonMark: a closing fence is the same character, at least as
    long, with nothing after it), or None."""
    opened: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if not match:
            continue
        marks, rest = match.groups()
        if opened is None:
            opened = (number, marks)
        elif marks[0] == opened[1][0] and len(marks) >= len(opened[1]) and not rest.strip():
            opened = None
    return None if opened is None else opened[0]


def test_the_fence_check_finds_an_unclosed_fence():
    assert unclosed_fence("```python\nx = 1\n```\n") is None
    assert unclosed_fence("text\n```\ncode\n``` `not a close`\nmore\n") == 2  # the README's old mistake
    assert unclosed_fence("````\n```\n````\n") is None


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_fence_is_closed(path):
    line = unclosed_fence(path.read_text(encoding="utf-8"))
    assert line is None, f"{path.relative_to(ROOT)}:{line}: this code fence is never closed"
