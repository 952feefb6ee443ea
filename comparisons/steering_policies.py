"""Steering policies of the molecular-design campaign against random search, same budget, in one run.

    PATH=$PWD/.venv/bin:$PATH dragon comparisons/steering_policies.py [--budget 200] [--seeds 0 1 2]

Runs the moldesign app (real GFN2-xTB simulations on CPU workers, real MPNN ensembles on the GPU pool, CPU
fallback without GPUs) once per policy and seed, and writes results/steering_policies.md and .csv: time to
solution (wall time until ``solution_count`` molecules are above the threshold), wall time, CPU-seconds
of simulation, seconds of learning tasks (GPU-seconds on GPU nodes), molecules found above the threshold
and best IP, as means over the seeds, with the ratio of molecules found to random search's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from common import Steps, provenance, require_dragon_runtime, use_dragon_processes, write_csv

POLICIES = ["random", "batch", "streaming", "interleaved"]
COLUMNS = ["policy", "seed", "simulations", "failed", "above_threshold", "best_ip_ev", "time_to_solution_s", "wall_s",
           "simulation_cpu_s", "learning_s", "retrainings"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=200, help="simulations per campaign")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--policies", nargs="+", default=POLICIES, choices=POLICIES)
    parser.add_argument("--retrain_every", type=int, default=25, help="streaming and interleaved: retrain after this many results")
    parser.add_argument("--batch_size", type=int, default=25, help="batch: simulations per batch")
    parser.add_argument("--space_limit", type=int, default=None, help="use only the first N molecules of the space")
    parser.add_argument("--output", default="results", help="folder for the .md and .csv (default results/)")
    return parser.parse_args()


def _mean(rows: list[dict[str, Any]], column: str) -> float | None:
    values = [row[column] for row in rows if row[column] is not None]
    return statistics.mean(values) if len(values) == len(rows) else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "not reached" if value is None else f"{value:.{digits}f}"


def write_outputs(rows: list[dict[str, Any]], args: argparse.Namespace, threshold: float, solution_count: int) -> Path:
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    write_csv(output / "steering_policies.csv", rows, COLUMNS)
    by_policy = {p: [r for r in rows if r["policy"] == p] for p in args.policies}
    random_found = _mean(by_policy["random"], "above_threshold") if "random" in by_policy else None
    lines = [
        "# Steering policies: ML-guided molecular design against random search",
        "",
        *provenance(),
        f"- Campaign: {args.budget} GFN2-xTB ionization potentials per run from the bundled search space, seeds {args.seeds}; "
        f"threshold {threshold} eV (GFN2-xTB scale); time to solution = wall time until {solution_count} molecules are above it. "
        f"streaming/interleaved retrain every {args.retrain_every} results, batch uses batches of {args.batch_size}.",
        "- CPU-s: worker time of the simulations. Learning s: worker time of training and inference tasks "
        "(GPU-seconds on GPU nodes; this machine has no GPU, so they ran on one CPU worker).",
        "- Values are means over the seeds; per-run rows are in steering_policies.csv.",
        "",
        "| Policy | Molecules above threshold | vs random | Best IP (eV) | Time to solution (s) | Wall time (s) | CPU-s | Learning s | Retrainings |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for policy, runs in by_policy.items():
        found = _mean(runs, "above_threshold")
        ratio = f"{found / random_found:.1f}x" if random_found else "-"
        lines.append(
            f"| {policy} | {found:.1f} ({', '.join(str(r['above_threshold']) for r in runs)}) | {ratio} | {_fmt(_mean(runs, 'best_ip_ev'), 2)} | "
            f"{_fmt(_mean(runs, 'time_to_solution_s'))} | {_fmt(_mean(runs, 'wall_s'))} | {_fmt(_mean(runs, 'simulation_cpu_s'))} | "
            f"{_fmt(_mean(runs, 'learning_s'))} | {_fmt(_mean(runs, 'retrainings'))} |"
        )
    if random_found:
        best = max((p for p in by_policy if p != "random"), key=lambda p: _mean(by_policy[p], "above_threshold"), default=None)
        if best:
            ratio = _mean(by_policy[best], "above_threshold") / random_found
            lines += ["", f"Target (ML-steered search finds at least 2x as many as random, mean over seeds): "
                          f"{best} finds {ratio:.1f}x — {'met' if ratio >= 2 else 'NOT met'}."]
    lines.append("")
    (output / "steering_policies.md").write_text("\n".join(lines))
    return output / "steering_policies.md"


def main() -> None:
    args = parse_args()
    require_dragon_runtime("steering_policies.py")
    use_dragon_processes()

    from dragon_campaign import RunDirectory
    from dragon_campaign.apps import moldesign

    rows = []
    config = None
    steps = Steps(len(args.seeds) * len(args.policies))
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            for policy in args.policies:
                config = moldesign.Config(budget=args.budget, policy=policy, seed=seed, retrain_every=args.retrain_every,
                                          batch_size=args.batch_size, space_limit=args.space_limit)
                summary = moldesign.run(config, moldesign.default_pools(config), RunDirectory(Path(scratch) / f"{policy}-{seed}"))
                row = {"policy": policy, "seed": seed, **{c: summary[c] for c in COLUMNS if c in summary}}
                rows.append(row)
                steps.done(f"seed {seed} {policy:<12} found {row['above_threshold']:>4}  best {row['best_ip_ev']:.2f} eV  "
                           f"wall {row['wall_s']:.1f} s  learning {row['learning_s']:.1f} s")
    assert config is not None
    print(write_outputs(rows, args, config.threshold_ev, config.solution_count).read_text())


if __name__ == "__main__":
    main()
