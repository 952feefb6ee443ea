"""What an Ackley run leaves behind, beside the task server's results.jsonl.

* ``summary.json``: best value and point, completions, cancellations, retraining time, update latencies;
* ``progress.csv``: the best value found after each completion;
* ``reprioritizations.csv``: each refit and reordering (when, how many tasks, how long);
* ``workers.csv``: live workers over time (pools joining mid-run show as steps);
* ``best_vs_completions.png``: best value against completions, with the reprioritizations marked.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from dragon_campaign import RunDirectory
from dragon_campaign.apps.ackley.thinker import AckleySearch, Reprioritization


def best_so_far(thinker: AckleySearch) -> list[float]:
    """The best value after each completion (failed tasks, NaN, change nothing)."""
    best, trace = math.inf, []
    for evaluation in thinker.evaluations:
        if not math.isnan(evaluation.value):
            best = min(best, evaluation.value)
        trace.append(best)
    return trace


def summarize(thinker: AckleySearch) -> dict[str, Any]:
    """The run's summary: completions, best value, rounds, times."""
    config = thinker.config
    finished = [e for e in thinker.evaluations if not math.isnan(e.value)]
    best = min(finished, key=lambda e: e.value, default=None)
    updates = sorted(r.update_s for r in thinker.reprioritizations)
    pools = sorted({e.pool for e in thinker.evaluations if e.pool})
    return {
        "app": "ackley",
        "reprioritize": config.reprioritize,
        "reprioritize_endpoint": config.reprioritize_endpoint,
        "completions": len(thinker.evaluations),
        "failed": len(thinker.evaluations) - len(finished),
        "cancelled": thinker.cancelled,
        "best_value": best.value if best else None,
        "best_point": thinker.points[best.index].tolist() if best else None,
        "best_after_num_guesses": _finite(best_so_far(thinker)[config.num_guesses - 1]) if len(thinker.evaluations) >= config.num_guesses else None,
        "reprioritizations": len(thinker.reprioritizations),
        "retrain_s": sum(r.retrain_s for r in thinker.reprioritizations),
        "median_update_priority_ms": 1000 * updates[len(updates) // 2] if updates else None,
        "completions_per_pool": {pool: sum(1 for e in thinker.evaluations if e.pool == pool) for pool in pools},
        "workers_at_end": thinker.worker_counts[-1][2] if thinker.worker_counts else 0,
        "wall_s": thinker.evaluations[-1].at_s if thinker.evaluations else 0.0,
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def plot(thinker: AckleySearch, path: Path) -> None:
    """Best value against completions, with the rounds where pools joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = best_so_far(thinker)
    figure, axis = plt.subplots(figsize=(6, 4), constrained_layout=True)
    axis.plot(range(1, len(trace) + 1), trace, color="tab:blue", label="best value found")
    for index, round_ in enumerate(thinker.reprioritizations):
        axis.axvline(round_.completions, color="tab:orange", alpha=0.4, label="reprioritization" if index == 0 else None)
    axis.set_xlabel("Completions")
    axis.set_ylabel("Best Ackley value")
    axis.set_title("reprioritized by GPR" if thinker.config.reprioritize else "submission order")
    axis.legend()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(thinker: AckleySearch, run_dir: RunDirectory) -> dict[str, Any]:
    """Write the run's files (see the module's docstring); returns the summary."""
    summary = summarize(thinker)
    trace = best_so_far(thinker)
    with open(run_dir.path / "progress.csv", "w", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(["completions", "at_s", "index", "value", "pool", "best_value"])
        for done, (evaluation, best) in enumerate(zip(thinker.evaluations, trace, strict=True), start=1):
            writer.writerow([done, f"{evaluation.at_s:.3f}", evaluation.index, evaluation.value, evaluation.pool, best])
    with open(run_dir.path / "reprioritizations.csv", "w", newline="") as fp:
        rows = csv.DictWriter(fp, fieldnames=[f.name for f in fields(Reprioritization)])
        rows.writeheader()
        rows.writerows(asdict(r) for r in thinker.reprioritizations)
    with open(run_dir.path / "workers.csv", "w", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(["at_s", "completions", "workers"])
        writer.writerows((f"{at:.3f}", done, workers) for at, done, workers in thinker.worker_counts)
    plot(thinker, run_dir.path / "best_vs_completions.png")
    (run_dir.path / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
