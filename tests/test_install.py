"""``install.sh`` where users are: as a user without root, on a machine whose PATH has no redis-server, in a
fresh clone; then ``bash run.sh`` runs the default campaign. (The README's two commands, as written.)

It needs root to make the user and to hide redis-server (a bind mount in a mount namespace of its own), as
CI has; the user's pip downloads what it installs, so this takes a few minutes."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
USER = "dc-install-test"
PYTHON = "/usr/bin/python3"  # the system's interpreter: one a user without root can run


def _as_root_with_tools() -> str | None:
    if os.geteuid() != 0:
        return "needs root (to create a user and hide redis-server)"
    for tool in ("useradd", "unshare", "su", "git"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    checked = subprocess.run([PYTHON, "-c", "import sys, venv; sys.exit(sys.version_info < (3, 11))"], capture_output=True)
    return None if checked.returncode == 0 else f"needs {PYTHON} 3.11+ with venv"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_install_sh_without_root_or_redis_then_run_sh_runs_the_default_campaign(tmp_path):
    if (reason := _as_root_with_tools()) is not None:
        pytest.skip(reason)
    try:
        pwd.getpwnam(USER)
        created = False
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
        created = True
    home = Path(pwd.getpwnam(USER).pw_dir)
    clone = home / "dragon-campaign"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(clone)], check=True)
    script = (f"cd {clone} && ! redis-server --version && PYTHON={PYTHON} bash install.sh && "
              "bash run.sh --run-dir runs/first --progress-interval 0")
    hide = ""
    if (redis := shutil.which("redis-server")) is not None:  # the user's PATH must not have it: an empty, plain file over it
        blank = tmp_path / "not-redis"
        blank.write_text("")
        blank.chmod(0o644)
        hide = f"mount --bind {blank} {redis} && "
    try:
        completed = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                    f"{hide}exec su - {USER} -c '{script}'"], capture_output=True, text=True, timeout=1400,
                                   stdin=subprocess.DEVNULL)
        assert completed.returncode == 0, (completed.stdout[-3000:], completed.stderr[-3000:])
        assert "as root" not in completed.stderr and "sudo" not in completed.stdout
        summary = json.loads((clone / "runs" / "first" / "summary.json").read_text())
        assert summary["simulations"] == 24
        assert not (clone / ".venv" / ".dev-extras").exists(), "the plain install is the campaign's, not the tests'"
        owners = {path.stat().st_uid for path in (clone / ".venv", clone / "runs" / "first" / "results.jsonl")}
        assert owners == {pwd.getpwnam(USER).pw_uid}
    finally:
        shutil.rmtree(clone, ignore_errors=True)
        if created:  # the user and its home (its pip cache) go too
            subprocess.run(["userdel", "--remove", USER], capture_output=True)
