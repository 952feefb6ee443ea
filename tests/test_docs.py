"""The README's example runs as a user would run it, and the API page shows what users call (the Markdown
checks: tests/unit/test_markdown.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from common import outside_runtime_env

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_example_runs(tmp_path):
    """The README's campaign, as a user would run it: saved to a file and run with the command it names."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```python\n(.*?)```", readme, re.S)
    script = tmp_path / "squares.py"
    script.write_text(example)
    env = outside_runtime_env()
    output = tmp_path / "output.txt"
    with open(output, "w") as out:
        done = subprocess.run(["dragon-campaign", "run", str(script), "--workers", "4", "--run-dir", str(tmp_path / "run")], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=240)
    text = output.read_text()
    assert done.returncode == 0, text[-3000:]
    assert sorted(int(line.split()[0]) for line in text.splitlines() if " squared is " in line) == list(range(10)), text[-3000:]
    assert "81 squared is 81" not in text and "9 squared is 81" in text
    assert (tmp_path / "run" / "report.html").exists()


def test_the_api_page_shows_constructors_and_only_public_names(tmp_path):
    import html

    env = {**outside_runtime_env(), "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(["mkdocs", "build", "--strict", "--site-dir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    page = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (tmp_path / "api" / "index.html").read_text())))
    for signature in ("DragonQueues ( topics", "DragonTaskServer ( methods", "WorkerPool(workers=None, gpus=False", "DDictStore ( name"):
        assert signature in page, signature
    for inherited in ("put ", "get ", "read ", "namespace "):  # DDictStore's, from Namespace
        assert f" {inherited}" in page
    for internal in ("set_aside", "requeue", "attach_server", "end_unfinished", "may_retry", "pool_broken", ":class:", ":meth:"):
        assert internal not in page, internal
