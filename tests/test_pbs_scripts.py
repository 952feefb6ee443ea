"""Every PBS script of pbs-scripts/ has the directives Polaris needs, and its campaign command line parses
(the script itself runs with CHECK_ONLY=1, which validates the command with --dry-run instead of running it).
A job of a chain resumes a run directory that holds a checkpoint; submit_chain.sh links the jobs with
afterany dependencies (checked with a stand-in qsub that records its arguments: PBS is not reachable here)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
from common import outside_runtime_env

from dragon_campaign.journal.database import JOURNAL_FILE, connect

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


def job_environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    nodefile = tmp_path / "nodes"
    nodefile.write_text("x3001c0s1b0n0\nx3001c0s1b1n0\n")
    env = outside_runtime_env()
    env.update(CHECK_ONLY="1", REPO=str(ROOT), PBS_O_WORKDIR=str(ROOT), PBS_JOBID="123456.polaris-pbs-01",
               PBS_NODEFILE=str(nodefile), WORKERS_PER_NODE="32")
    env.update(variables)
    return env


def run_job(script: Path, env: dict[str, str], cwd: Path) -> str:
    completed = subprocess.run(["bash", str(script)], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return completed.stdout


@pytest.mark.parametrize("script", CAMPAIGN_SCRIPTS, ids=lambda s: s.name)
def test_campaign_command_parses(script, tmp_path):
    env = job_environment(tmp_path, STOP_AFTER="3000")
    if script.name != "multi_site.pbs":
        env["CONFIG"] = "launchers/configs/moldesign-polaris.yaml"
    output = run_job(script, env, tmp_path)
    assert "plan:" in output and "run_dir: runs/pbs-123456" in output
    assert "workers: 64" in output  # WORKERS_PER_NODE x the two nodes of the node file
    assert "--stop-after 3000" in output


def test_a_job_resumes_a_run_directory_with_a_checkpoint_and_skips_a_finished_one(tmp_path):
    run_dir = tmp_path / "runs" / "chain"
    first = run_job(ROOT / "pbs-scripts" / "one_node.pbs", job_environment(tmp_path, RUN_DIR=str(run_dir)), tmp_path)
    assert "--run-dir" in first and "--resume" not in first
    (run_dir / "checkpoint").mkdir(parents=True)  # what a checkpointed job leaves: its plan and a checkpoint
    (run_dir / "config.yaml").write_text(first[first.index("plan:") + len("plan:"):].replace("\n  ", "\n"))
    (run_dir / "checkpoint" / "campaign.pkl").write_bytes(b"")
    env = job_environment(tmp_path, RUN_DIR=str(run_dir), CONFIG="launchers/configs/moldesign-polaris.yaml")
    resumed = run_job(ROOT / "pbs-scripts" / "one_node.pbs", env, tmp_path)
    assert f"--resume {run_dir}" in resumed and "--config" not in resumed.splitlines()[0]
    assert f"run_dir: {run_dir}" in resumed
    (run_dir / "checkpoint" / "campaign.pkl").unlink()
    (run_dir / "summary.json").write_text("{}")
    assert "has finished: nothing to do" in run_job(ROOT / "pbs-scripts" / "one_node.pbs", env, tmp_path)


def test_a_job_resumes_a_run_killed_before_it_could_checkpoint(tmp_path):
    """PBS's SIGKILL at the walltime (or a lost node) leaves no checkpoint: the next job resumes from the journal."""
    run_dir = tmp_path / "runs" / "chain"
    first = run_job(ROOT / "pbs-scripts" / "one_node.pbs", job_environment(tmp_path, RUN_DIR=str(run_dir)), tmp_path)
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(first[first.index("plan:") + len("plan:"):].replace("\n  ", "\n"))
    gone = subprocess.Popen(["true"])
    gone.wait()  # the killed job's head process: its pid is free
    db = connect(run_dir / JOURNAL_FILE)
    db.execute("INSERT INTO sessions (started, host, pid, heartbeat) VALUES (?, ?, ?, ?)",
               (time.time() - 60, socket.gethostname(), gone.pid, time.time() - 60))
    db.close()
    resumed = run_job(ROOT / "pbs-scripts" / "one_node.pbs", job_environment(tmp_path, RUN_DIR=str(run_dir)), tmp_path)
    assert f"--resume {run_dir}" in resumed


def test_submit_chain_links_jobs_with_afterany(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "qsub-calls"
    (bin_dir / "qsub").write_text(f'#!/bin/bash\necho "$* | $RUN_DIR | $STOP_AFTER" >> {calls}\n'
                                  f'echo "$(( $(wc -l < {calls}) + 1000 )).polaris-pbs-01"\n')
    (bin_dir / "qsub").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "WALLTIME": "02:00:00", "RUN_DIR": "runs/long"}
    completed = subprocess.run(["bash", "pbs-scripts/submit_chain.sh", "3", "pbs-scripts/many_nodes.pbs", "-A", "MyProject"],
                               env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    lines = calls.read_text().splitlines()
    assert lines == [
        "-l walltime=02:00:00 -A MyProject pbs-scripts/many_nodes.pbs | runs/long | 6600",
        "-W depend=afterany:1001.polaris-pbs-01 -l walltime=02:00:00 -A MyProject pbs-scripts/many_nodes.pbs | runs/long | 6600",
        "-W depend=afterany:1002.polaris-pbs-01 -l walltime=02:00:00 -A MyProject pbs-scripts/many_nodes.pbs | runs/long | 6600",
    ]
    bad = subprocess.run(["bash", "pbs-scripts/submit_chain.sh", "2", "pbs-scripts/one_node.pbs"], env={**env, "WALLTIME": "00:05:00"},
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "leaves no time" in bad.stderr


def test_a_job_runs_a_users_campaign_file(tmp_path):
    """CAMPAIGN names your own campaign instead of an app; SET passes --set overrides; a chain resumes it alike."""
    campaign = tmp_path / "mine.py"
    campaign.write_text("from pydantic import BaseModel\nclass Config(BaseModel):\n    n: int = 1\ndef campaign(run):\n    pass\n")
    env = job_environment(tmp_path, CAMPAIGN="mine.py", SET="app.n=5", PBS_O_WORKDIR=str(tmp_path))  # qsub ran beside it
    output = run_job(ROOT / "pbs-scripts" / "one_node.pbs", env, tmp_path)
    assert f"command: dragon-campaign run {campaign} --run-dir runs/pbs-123456 --set app.n=5" in output
    assert f"campaign: {campaign}:campaign" in output and "n: 5" in output
