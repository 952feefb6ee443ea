"""The launcher as a user meets it: Ctrl-C typed in a terminal checkpoints and resumes, Ctrl-C during
set-up stops cleanly, ``setsid bash run.sh --help`` returns, and a bad molecule fails only its task.

Each test starts ``bash run.sh`` with a Dragon runtime of its own, in a pseudo-terminal (tests/terminal.py),
and checks that nothing of that runtime is left afterwards (comparisons/faults.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import faults
import pytest
from common import outside_runtime_env
from terminal import CTRL_C

from dragon_campaign import launch

ROOT = Path(__file__).resolve().parent.parent


def small_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "small.yaml"
    config.write_text(faults.SMALL_CAMPAIGN + extra)
    return config


def assert_clean(run: faults.Run) -> None:
    details: list[str] = []
    assert all(faults.check_leftovers(run, details).values()), details
    assert faults.results_intact(run.run_dir, details), details


def campaign_with_results(tmp_path: Path, run_dir: Path, simulations: int, workers: int = faults.WORKERS) -> faults.Run:
    """The small campaign, started in a terminal, once it has logged ``simulations`` results."""
    run = faults.start(faults.campaign_command(small_config(tmp_path), run_dir, workers), run_dir, tmp_path / "run.log")
    deadline = time.monotonic() + 200
    while run.simulations_logged() < simulations and time.monotonic() < deadline and run.terminal.process.poll() is None:
        run.watch()
        time.sleep(0.1)
    assert run.simulations_logged() >= simulations, run.terminal.output()[-3000:]
    run.watch()
    return run


def test_ctrl_c_in_a_terminal_checkpoints_then_resume_runs_each_task_once(tmp_path):
    run_dir = tmp_path / "run"
    run = campaign_with_results(tmp_path, run_dir, simulations=4)
    run.terminal.type(CTRL_C)
    assert run.wait(120) == 3, run.terminal.output()[-3000:]
    output = run.terminal.output()
    assert "KeyboardInterrupt - going to teardown" not in output, "Dragon's launcher took the Ctrl-C"
    assert "checkpointed to" in output and "carry on with: bash run.sh --resume" in output
    assert_clean(run)
    described = json.loads((run_dir / "checkpoint" / "checkpoint.json").read_text())
    assert described["reason"] == "SIGINT"

    resume = faults.start(["bash", str(ROOT / "run.sh"), "--resume", str(run_dir), "--progress-interval", "0"], run_dir,
                          tmp_path / "resume.log")
    assert resume.wait(300) == 0, resume.terminal.output()[-3000:]
    assert_clean(resume)
    details: list[str] = []
    assert faults.each_simulation_once(run_dir, details), details
    assert json.loads((run_dir / "summary.json").read_text())["simulations"] == faults.BUDGET


def test_ctrl_c_in_a_terminal_with_a_crowded_node_checkpoints_and_leaves_nothing(tmp_path):
    """32 workers on a node of fewer cores sleep on doorbells and take turns at the result queue: Ctrl-C still
    checkpoints, and every one of them is gone afterwards."""
    if (os.cpu_count() or 1) >= 32:
        pytest.skip("32 workers do not crowd this node")
    run_dir = tmp_path / "run"
    run = campaign_with_results(tmp_path, run_dir, simulations=2, workers=32)
    run.terminal.type(CTRL_C)
    assert run.wait(180) == 3, run.terminal.output()[-3000:]
    assert "checkpointed to" in run.terminal.output()
    assert_clean(run)
    assert json.loads((run_dir / "checkpoint" / "checkpoint.json").read_text())["reason"] == "SIGINT"


def test_a_killed_launcher_leaves_nothing_behind(tmp_path):
    """kill -9 of the launcher (or the OOM killer taking it) mid-campaign: its warden removes the runtime's
    processes and segments; results already written stay."""
    run_dir = tmp_path / "run"
    run = campaign_with_results(tmp_path, run_dir, simulations=2)
    os.kill(run.wrapper, signal.SIGKILL)
    run.terminal.process.wait(10)  # reaped: not counted as alive
    deadline = time.monotonic() + launch.TEARDOWN_GRACE_S + launch.ORPHAN_GRACE_S + 30
    while (run.alive() or run.new_segments()) and time.monotonic() < deadline:
        time.sleep(0.5)
    run.terminal.close()
    assert_clean(run)
    assert run.simulations_logged() >= 2


def test_ctrl_c_during_set_up_stops_cleanly(tmp_path):
    """Before the campaign runs there is nothing to checkpoint: exit 130, said plainly, nothing left."""
    run_dir = tmp_path / "run"
    run = faults.start(faults.campaign_command(small_config(tmp_path), run_dir), run_dir, tmp_path / "run.log")
    deadline = time.monotonic() + 60
    while not (run_dir / "campaign.log").exists() and time.monotonic() < deadline:  # the head process has started
        run.watch()
        time.sleep(0.05)
    run.terminal.type(CTRL_C)
    assert run.wait(120) == 130, run.terminal.output()[-3000:]
    # said on the terminal and in the log; the terminal's line discipline may drop output written just after
    # the ^C (INTR flushes the pty's output queue), so the log is where it must always be
    said = run.terminal.output() + (run_dir / "campaign.log").read_text()
    assert "nothing to checkpoint" in said
    assert not (run_dir / "checkpoint").exists()
    assert_clean(run)


def test_setsid_run_sh_help_returns():
    """Detached with setsid (no terminal, a new session) the launcher answers and exits."""
    env = outside_runtime_env()
    completed = subprocess.run(["setsid", "bash", str(ROOT / "run.sh"), "--help"], env=env, capture_output=True, text=True,
                               timeout=60, stdin=subprocess.DEVNULL)
    assert completed.returncode == 0 and "--resume RUN_DIR" in completed.stdout


def test_setsid_run_sh_runs_a_campaign(tmp_path):
    """The runtime comes up under setsid too (with exec dragon its local services could not set their group)."""
    env = outside_runtime_env()
    run_dir = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    config.write_text("app:\n  budget: 2\n  policy: random\n  space_limit: 50\n  chunk_size: 50\n")
    completed = subprocess.run(["setsid", "bash", str(ROOT / "run.sh"), "--config", str(config), "--run-dir", str(run_dir),
                                "--workers", "1", "--progress-interval", "0"], env=env, capture_output=True, text=True,
                               timeout=300, stdin=subprocess.DEVNULL)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["simulations"] == 2


def test_invalid_smiles_in_the_search_space_fail_their_tasks_only(tmp_path):
    from dragon_campaign.apps.moldesign.space import load_search_space

    space = tmp_path / "space.smi"
    good = list(load_search_space()[100:118])
    space.write_text("\n".join(["not_a_smiles", *good, "C1CC"]) + "\n")
    run_dir = tmp_path / "run"
    config = tmp_path / "bad.yaml"
    config.write_text(f"app:\n  budget: 20\n  retrain_every: 4\n  ensemble: 2\n  epochs: 5\n  search_space: {space}\n  chunk_size: 8\n")
    run = faults.start(faults.campaign_command(config, run_dir), run_dir, tmp_path / "run.log")
    assert run.wait(300) == 0, run.terminal.output()[-3000:]
    assert_clean(run)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["simulations"] == 18 and summary["failed"] == 2, summary
    reasons = sorted(failure["reason"] for failure in summary["failures"])
    assert "Invalid SMILES 'C1CC'" in reasons[0] and "Invalid SMILES 'not_a_smiles'" in reasons[1]
