"""GPR reprioritization of waiting tasks against submission order, same search, same seeds, in one run.

    PATH=$PWD/.venv/bin:$PATH dragon comparisons/reprioritization.py [--seeds 0 1 2] [--config launchers/configs/ackley.yaml]

Runs the Ackley app (``launchers/configs/ackley.yaml``: 750 points in 4 dimensions, a GPR refitted every 50
completions, pools joining after rounds 2 and 4) with and without reprioritization for each seed, and writes
results/reprioritization.md and .csv: the best value after K completions (median over seeds), the time
spent refitting, and the latency of ``update_priority`` on 700 waiting tasks (measured on its own, on
queues holding 700 tasks, median of repeats).
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Steps, provenance, require_dragon_runtime, use_dragon_processes, write_csv

ROOT = Path(__file__).resolve().parent.parent
UPDATE_TARGET_MS = 50.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "launchers" / "configs" / "ackley.yaml"), help="campaign file (its app: section)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[100, 200, 300], help="K: completions at which to compare")
    parser.add_argument("--runtime", type=float, default=None, help="override the mean task run time (s)")
    parser.add_argument("--waiting", type=int, default=700, help="waiting tasks for the update_priority latency")
    parser.add_argument("--repeats", type=int, default=21, help="repeats of the update_priority measurement")
    parser.add_argument("--output", default="results", help="folder for the .md and .csv (default results/)")
    return parser.parse_args()


def update_priority_latency(waiting: int, repeats: int) -> list[float]:
    """Seconds per ``update_priority`` call over ``waiting`` queued tasks, each call with fresh priorities."""
    from dragon_campaign import DragonQueues

    queues = DragonQueues(topics=["evaluate"])
    task_ids = [queues.send_inputs(i, method="evaluate", topic="evaluate") for i in range(waiting)]
    timings = []
    for _ in range(repeats):
        priorities = [random.random() for _ in task_ids]
        start = time.perf_counter()
        changed = queues.update_priority(task_ids, priorities)
        timings.append(time.perf_counter() - start)
        assert len(changed) == waiting
    queues.cancel(task_ids)
    return timings


def median_at(rows: list[dict[str, Any]], column: str) -> float | None:
    values = [row[column] for row in rows if row[column] is not None]
    return statistics.median(values) if values else None


def write_outputs(rows: list[dict[str, Any]], latencies: list[float], args: argparse.Namespace, app_config: Any) -> Path:
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    write_csv(output / "reprioritization.csv", rows)
    pools = ", ".join(f"{p.name} ({p.workers} workers, from round {p.join_after})" for p in app_config.pools)
    lines = [
        "# Reprioritization: GPR-ordered waiting tasks against submission order (Ackley)",
        "",
        *provenance(),
        f"- Search: {app_config.search_space_size} uniform points in {app_config.sample_dimensions} dimensions, "
        f"{app_config.num_guesses} completions, GPR refitted every {app_config.retrain_after} completions "
        f"({app_config.reprioritize_endpoint}); task run time lognormal, mean {app_config.runtime} s, variance {app_config.runtime_var}; "
        f"pools {pools}; seeds {args.seeds}.",
        "- Best value: lowest Ackley value among the first K completions (0 is the optimum). Mean value: of the tasks "
        "completed after the first refit, which the GPR ordered. Medians over seeds; per-run values in reprioritization.csv.",
        "",
        "| Order | " + " | ".join(f"Best after {k}" for k in args.checkpoints) +
        f" | Mean value of completions {app_config.retrain_after + 1}-{app_config.num_guesses} | Refit time (s) | Wall time (s) | Reprioritizations |",
        "|---|" + "---|" * (len(args.checkpoints) + 4),
    ]
    by_mode = {mode: [r for r in rows if r["order"] == mode] for mode in ("submission", "gpr")}
    for mode, runs in by_mode.items():
        bests = [median_at(runs, f"best_after_{k}") for k in args.checkpoints]
        cells = ["-" if best is None else f"{best:.3f}" for best in bests]
        lines.append(f"| {'submission order' if mode == 'submission' else 'GPR reprioritized'} | " + " | ".join(cells) +
                     f" | {median_at(runs, 'mean_after_first_round'):.3f} | {median_at(runs, 'retrain_s'):.2f} | {median_at(runs, 'wall_s'):.1f} | {median_at(runs, 'reprioritizations'):.0f} |")
    latencies_ms = sorted(1000 * t for t in latencies)
    median_ms = statistics.median(latencies_ms)
    final = args.checkpoints[-1]
    plain, steered = median_at(by_mode["submission"], f"best_after_{final}"), median_at(by_mode["gpr"], f"best_after_{final}")
    lines += [
        "",
        f"- `update_priority` on {args.waiting} waiting tasks: median {median_ms:.2f} ms, max {latencies_ms[-1]:.2f} ms over "
        f"{len(latencies_ms)} calls (target: under {UPDATE_TARGET_MS:.0f} ms — {'met' if median_ms < UPDATE_TARGET_MS else 'NOT met'}).",
    ]
    if plain is not None and steered is not None:
        lines.append(f"- After {final} completions the reprioritized search's median best is {steered:.3f} against {plain:.3f} "
                     f"in submission order ({'lower: target met' if steered < plain else 'NOT lower: target not met'}).")
    lines.append("")
    (output / "reprioritization.md").write_text("\n".join(lines))
    return output / "reprioritization.md"


def main() -> None:
    args = parse_args()
    require_dragon_runtime("reprioritization.py")
    use_dragon_processes()

    import yaml

    from dragon_campaign import RunDirectory
    from dragon_campaign.apps import ackley
    from dragon_campaign.runs import parse_config

    campaign = yaml.safe_load(Path(args.config).read_text()) or {}
    base = parse_config(campaign.get("app", {}), ackley.Config, source=args.config, prefix="app.")
    if args.runtime is not None:
        base = base.model_copy(update={"runtime": args.runtime})
    latencies = update_priority_latency(args.waiting, args.repeats)
    rows = []
    config = base
    steps = Steps(2 * len(args.seeds))
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            for reprioritize in (False, True):
                config = base.model_copy(update={"seed": seed, "reprioritize": reprioritize})
                order = "gpr" if reprioritize else "submission"
                run_dir = RunDirectory(Path(scratch) / f"{order}-{seed}")
                summary = ackley.run(config, ackley.default_pools(config), run_dir)
                progress = list(csv.DictReader(open(run_dir.path / "progress.csv")))
                trace = [float(row["best_value"]) for row in progress]
                later = [float(row["value"]) for row in progress[config.retrain_after:config.num_guesses]]
                row = {"order": order, "seed": seed, **{f"best_after_{k}": trace[k - 1] if len(trace) >= k else None for k in args.checkpoints},
                       "mean_after_first_round": statistics.fmean(later) if later else None,
                       "retrain_s": summary["retrain_s"], "wall_s": summary["wall_s"], "reprioritizations": summary["reprioritizations"],
                       "completions": summary["completions"], "cancelled": summary["cancelled"]}
                rows.append(row)
                steps.done(f"seed {seed} {order:<10} " + "  ".join(f"best@{k} {row[f'best_after_{k}']:.3f}" for k in args.checkpoints
                                                                if row[f"best_after_{k}"] is not None) + f"  wall {row['wall_s']:.1f} s")
    print(write_outputs(rows, latencies, args, config).read_text())


if __name__ == "__main__":
    main()
