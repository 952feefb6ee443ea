"""Every PBS script of pbs-scripts/ has the directives Polaris needs, and its campaign command line parses
(the script itself runs with CHECK_ONLY=1, which validates the command with --dry-run instead of running it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "pbs-scripts").glob("*.pbs"))
CAMPAIGN_SCRIPTS = [s for s in SCRIPTS if "campaign_command.sh" in s.read_text()]


def directives(script: Path) -> list[str]:
    return [line[len("#PBS"):].strip() for line in script.read_text().splitlines() if line.startswith("#PBS")]


def test_there_are_scripts_for_one_node_many_nodes_and_multi_site():
    assert {"one_node.pbs", "many_nodes.pbs", "multi_site.pbs"} <= {s.name for s in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_directives(script):
    found = directives(script)
    text = " ".join(found)
    assert re.search(r"-l select=\d+:system=polaris", text), "select=N:system=polaris"
    assert "-l place=scatter" in text and "-l walltime=" in text and "-l filesystems=" in text
    assert re.search(r"(^| )-q \S+", text) and "-V" in found and "-j oe" in found
    body = script.read_text()
    assert "set -euo pipefail" in body and "source pbs-scripts/polaris_env.sh" in body
    assert "qsub -A" in body, "the header shows how to submit it with an account"


def test_environment_of_every_script():
    env = (ROOT / "pbs-scripts" / "polaris_env.sh").read_text()
    assert "module unload xalt" in env and "/opt/pbs/bin" in env and "--ofi-runtime-lib=" in env


def test_many_nodes_asks_for_several():
    select = next(d for d in directives(ROOT / "pbs-scripts" / "many_nodes.pbs") if "select=" in d)
    assert int(re.search(r"select=(\d+)", select).group(1)) > 1


@pytest.mark.parametrize("script", CAMPAIGN_SCRIPTS, ids=lambda s: s.name)
def test_campaign_command_parses(script, tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("x3001c0s1b0n0\nx3001c0s1b1n0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGON_")}
    env.update(CHECK_ONLY="1", REPO=str(ROOT), PBS_O_WORKDIR=str(ROOT), PBS_JOBID="123456.polaris-pbs-01",
               PBS_NODEFILE=str(nodefile), WORKERS_PER_NODE="32", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    if script.name != "multi_site.pbs":
        env["CONFIG"] = "launchers/configs/moldesign-polaris.yaml"
    completed = subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "plan:" in completed.stdout and "run_dir: runs/pbs-123456" in completed.stdout
    assert "workers: 64" in completed.stdout  # WORKERS_PER_NODE x the two nodes of the node file
