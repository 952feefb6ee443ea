"""The documentation renders: every Markdown file closes its code fences, and the README's example runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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


def test_the_readme_example_runs(tmp_path):
    """The README's campaign, as a user would run it: saved to a file and started with dragon."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```python\n(.*?)```", readme, re.S)
    script = tmp_path / "squares.py"
    script.write_text(example)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGON_")}  # a runtime of its own
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    output = tmp_path / "output.txt"
    with open(output, "w") as out:
        done = subprocess.run(["dragon", str(script)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=240)
    text = output.read_text()
    assert done.returncode == 0, text[-3000:]
    assert sorted(int(line.split()[0]) for line in text.splitlines() if " squared is " in line) == list(range(10)), text[-3000:]
    assert "81 squared is 81" not in text and "9 squared is 81" in text
