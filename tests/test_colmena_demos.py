"""Colmena's three optimizer demos, ported (examples/colmena_optimizers/), and the batch one with an MPI
executable for its evaluations, run to completion at small sizes, each as its user runs it:
``dragon <demo>.py ...`` with a runtime of its own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from common import outside_runtime_env

from dragon_campaign import read_results

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--num-guesses", "14", "--num-parallel", "2", "--dim", "2", "--runtime", "0.05", "--runtime-var", "0.1"]
EXTRA = {"batch": [], "streaming": ["--opt-delay", "0"], "interleaved": ["--runtime", "0.5", "--opt-delay", "0.1", "--search-space-size", "60"],
         "mpi_executable": ["--ranks", "2"]}


@pytest.mark.parametrize("demo", list(EXTRA))
def test_ported_optimizer_demo_runs_to_completion(demo, tmp_path):
    env = outside_runtime_env()
    command = ["dragon", str(ROOT / "examples" / "colmena_optimizers" / f"{demo}.py"), *SMALL, *EXTRA[demo], "--out-dir", str(tmp_path)]
    completed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400,
                               stdin=subprocess.DEVNULL)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (run_dir,) = tmp_path.glob(f"{demo}-N14-P2-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["demo"] == demo and summary["evaluations"] == 14
    assert 0 <= summary["best"] < 25  # Ackley's values lie in [0, ~22.3]
    demo_results = [json.loads(line) for line in (run_dir / "results.json").read_text().splitlines()]
    evaluations = [r for r in demo_results if r["method"] == "ackley"]
    assert len(evaluations) == 14 and all(r["success"] for r in evaluations)
    logged = [r for r in read_results(run_dir / "results.jsonl") if r.method == "ackley"]
    assert sorted(r.task_id for r in logged) == sorted(r["task_id"] for r in evaluations)
    if demo == "interleaved":  # the surrogate reordered the candidates on its own pool while evaluations ran
        reorders = [r for r in read_results(run_dir / "results.jsonl") if r.method == "reprioritize_queue" and r.success]
        assert reorders and {r.worker_info.pool for r in reorders} == {"optimizer"}
