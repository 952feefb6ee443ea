"""The worker-utilization timeline of the default campaign (README's first command), kept under results/.

    PATH=$PWD/.venv/bin:$PATH dragon comparisons/default_campaign_utilization.py [--output DIR] [launcher options...]

Runs ``launchers/run_campaign.py`` with its defaults (other options given here are passed on to it) in a
scratch run directory, and copies its ``utilization.png`` and ``utilization.csv`` to
<output>/default_campaign_utilization.* (default results/), with a .md that says on which machine, when
and with which command, how long the run took, how long each pool computed each method, and each worker's
busy fraction and share of the run spent idle while a task it could run waited (from the run's summary.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from common import provenance, require_dragon_runtime

from dragon_campaign.cli import run_campaign

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "results", help="folder for the files (default results/)")
    args, passed_on = parser.parse_known_args()
    require_dragon_runtime("default_campaign_utilization.py")
    output = args.output
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "default"
        code = run_campaign.main([*passed_on, "--run-dir", str(run_dir)])
        if code != 0 or not (run_dir / "utilization.png").exists():
            sys.exit(f"The default campaign exited with {code}; see {run_dir}/campaign.log")
        output.mkdir(parents=True, exist_ok=True)
        shutil.copy(run_dir / "utilization.png", output / "default_campaign_utilization.png")
        shutil.copy(run_dir / "utilization.csv", output / "default_campaign_utilization.csv")
        busy: dict[str, dict[str, float]] = defaultdict(dict)
        for row in csv.DictReader(open(run_dir / "utilization.csv")):
            busy[row["pool"]][row["method"]] = float(row["compute_s"])
        summary = json.loads((run_dir / "summary.json").read_text())
    lines = ["# Worker utilization of the default campaign (moldesign)", "", *provenance(),
             "- Picture: `default_campaign_utilization.png`, one row per worker, one bar per task coloured by method.",
             f"- Wall time {summary['wall_s']:.1f} s, of which {summary['setup_s']:.1f} s set-up (store, workers, featurizing the "
             f"search space); {summary['simulations']} simulations, {summary['retrainings']} retrainings, "
             f"{summary['unused_trainings']} abandoned (its tasks cancelled: the budget's last molecule was chosen while it trained).",
             "", "| Pool | Method | Compute (s) |", "|---|---|---|"]
    lines += [f"| {pool} | {method} | {seconds:.1f} |" for pool, methods in sorted(busy.items()) for method, seconds in sorted(methods.items())]
    lines += ["", "Busy: the share of the campaign (first task start to last task end) each worker computed. Idle while tasks "
              "waited: the share it sat idle while a task of a method its pool runs was submitted and not yet sent to a worker.", "",
              "| Worker | Busy | Idle while tasks waited |", "|---|---|---|"]
    idle = summary["worker_idle_while_tasks_wait"]
    lines += [f"| {worker} | {100 * fraction:.0f} % | {100 * idle[worker]:.0f} % |" for worker, fraction in summary["worker_busy_fraction"].items()]
    (output / "default_campaign_utilization.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
