"""What a molecular-design run leaves behind, beside the task server's results.jsonl.

* ``summary.json``: counts, the best molecules, time to solution and the compute spent;
* ``best_molecules.csv``: every simulated molecule, best first;
* ``progress.csv``: best IP and molecules above the threshold after each simulation;
* ``trainings.csv``: each retraining (train, publish, infer): its model version, data and duration;
* ``progress.png``: best IP and molecules above the threshold against simulations done and wall time.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from dragon_campaign import RunDirectory


def progress(results: list[dict[str, Any]], threshold: float) -> list[dict[str, float]]:
    """Best IP and count above the threshold after each simulation, in completion order."""
    best, above, trace = float("-inf"), 0, []
    for done, result in enumerate(results, start=1):
        best = max(best, result["ip_ev"])
        above += result["ip_ev"] >= threshold
        trace.append({"simulations": done, "wall_s": result["wall_s"], "best_ip_ev": best, "above_threshold": above})
    return trace


def summarize(thinker: Any, config: Any) -> dict[str, Any]:
    """The run's summary: counts, best molecules, time to solution, compute spent."""
    results, trainings = thinker.state.results, thinker.state.trainings
    trace = progress(results, config.threshold_ev)
    ranked = sorted(results, key=lambda r: -r["ip_ev"])
    solved = [t for t in trace if t["above_threshold"] >= config.solution_count]
    return {
        "app": "moldesign",
        "policy": config.policy,
        "budget": config.budget,
        "simulations": len(results),
        "failed": len(thinker.state.failures),
        "failures": thinker.state.failures[:20],
        "threshold_ev": config.threshold_ev,
        "above_threshold": trace[-1]["above_threshold"] if trace else 0,
        "best_ip_ev": ranked[0]["ip_ev"] if ranked else None,
        "best_molecules": [{"smiles": r["smiles"], "ip_ev": r["ip_ev"]} for r in ranked[:10]],
        "last_result_s": results[-1]["wall_s"] if results else 0.0,  # since the thinker started
        "solution_count": config.solution_count,
        "time_to_solution_s": solved[0]["wall_s"] if solved else None,
        "simulation_cpu_s": sum(r["compute_s"] for r in results),
        "learning_s": sum(t["ml_task_s"] for t in trainings),
        "retrainings": len(trainings),  # each one ranked the space
        "unused_trainings": thinker.state.unused_trainings,  # abandoned: the budget's last molecule was chosen meanwhile
    }


def plot(trace: list[dict[str, float]], threshold: float, path: Path) -> None:
    """Best IP and molecules above the threshold against simulations and wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axis, x, label in ((axes[0], "simulations", "Simulations done"), (axes[1], "wall_s", "Wall time (s)")):
        xs = [t[x] for t in trace]
        axis.plot(xs, [t["best_ip_ev"] for t in trace], color="tab:blue")
        axis.set_xlabel(label)
        axis.set_ylabel("Best IP found (eV)", color="tab:blue")
        twin = axis.twinx()
        twin.step(xs, [t["above_threshold"] for t in trace], where="post", color="tab:orange")
        twin.set_ylabel(f"Molecules with IP >= {threshold} eV", color="tab:orange")
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(thinker: Any, config: Any, run_dir: RunDirectory) -> dict[str, Any]:
    """Write the run's files (see the module's docstring); returns the summary."""
    summary = summarize(thinker, config)
    trace = progress(thinker.state.results, config.threshold_ev)
    with open(run_dir.path / "progress.csv", "w", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=["simulations", "wall_s", "best_ip_ev", "above_threshold"])
        writer.writeheader()
        writer.writerows(trace)
    with open(run_dir.path / "best_molecules.csv", "w", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=["smiles", "ip_ev", "neutral_energy_ev", "cation_energy_ev", "atoms",
                                                "relax_steps", "method", "seconds", "wall_s", "compute_s", "molecule"])
        writer.writeheader()
        writer.writerows(sorted(thinker.state.results, key=lambda r: -r["ip_ev"]))
    with open(run_dir.path / "trainings.csv", "w", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=["version", "samples", "seconds", "ml_task_s", "mean_last_loss", "wall_s"])
        writer.writeheader()
        writer.writerows(thinker.state.trainings)
    if trace:
        plot(trace, config.threshold_ev, run_dir.path / "progress.png")
    return summary
