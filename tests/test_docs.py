"""The README's example runs as a user would run it (the Markdown checks: tests/unit/test_markdown.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from common import outside_runtime_env

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_example_runs(tmp_path):
    """The README's campaign, as a user would run it: saved to a file and started with dragon."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```python\n(.*?)```", readme, re.S)
    script = tmp_path / "squares.py"
    script.write_text(example)
    env = outside_runtime_env()
    output = tmp_path / "output.txt"
    with open(output, "w") as out:
        done = subprocess.run(["dragon", str(script)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=240)
    text = output.read_text()
    assert done.returncode == 0, text[-3000:]
    assert sorted(int(line.split()[0]) for line in text.splitlines() if " squared is " in line) == list(range(10)), text[-3000:]
    assert "81 squared is 81" not in text and "9 squared is 81" in text
