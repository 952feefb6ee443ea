"""What the campaign journal costs: no-op throughput with and without it, and the window a SIGKILL can lose.

    PATH=$PWD/.venv/bin:$PATH dragon comparisons/journal_cost.py [--runs 5] [--workers 2] [--seconds 5] [--output results]

Both configurations run in this invocation, the same no-op method on the same worker pool, alternating
(journal off, on, on, off, ...) so that drift on a noisy machine falls on both. Each run starts a task
server, warms it up, keeps ``--in-flight`` tasks submitted and not yet taken for ``--seconds`` (one more for
every result taken: full dispatch speed), then drains and stops it. Throughput is completed tasks per
second; the table gives the median and range over ``--runs`` runs of each. The loss window is measured
from the journal of every run with it: for each result, the time from its arrival in the steering process
(``timestamp.result_received``) to its group commit; a SIGKILL at any moment loses at most the results
of that window. Writes <output>/journal_cost.md and .csv.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import time
from importlib.metadata import version
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from common import commit, provenance, require_dragon_runtime, use_dragon_processes, write_csv, write_report

WARMUP_TASKS = 200


def noop(x: Any) -> Any:
    return x


def one_run(journal: bool, args: argparse.Namespace) -> dict[str, Any]:
    from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool

    queues = DragonQueues()
    with TemporaryDirectory() as run_dir:
        server = DragonTaskServer([noop], queues, pools={"cpu": WorkerPool(workers=args.workers)}, run_dir=run_dir, journal=journal)
        with server:
            while server.worker_count(ready=True) < args.workers:
                time.sleep(0.05)
            for i in range(WARMUP_TASKS):
                queues.send_inputs(i, method="noop")
            for _ in range(WARMUP_TASKS):
                queues.get_result(timeout=120)
            start = time.perf_counter()
            for i in range(args.in_flight):
                queues.send_inputs(i, method="noop")
            done = 0
            while time.perf_counter() - start < args.seconds:
                queues.get_result(timeout=120)
                queues.send_inputs(done, method="noop")
                done += 1
            for _ in range(args.in_flight):
                queues.get_result(timeout=120)
            rate = (done + args.in_flight) / (time.perf_counter() - start)
            commits = server.journal.commits if server.journal else 0
        row: dict[str, Any] = {"journal": journal, "tasks_per_s": rate, "tasks": done + args.in_flight + WARMUP_TASKS, "commits": commits}
        if journal:
            row.update(loss_window(Path(run_dir)))
    return row


def loss_window(run_dir: Path) -> dict[str, float]:
    """From arrival in the steering process to the group commit, over every result of the run."""
    with sqlite3.connect(run_dir / "journal.sqlite") as db:
        lags = sorted(at - json.loads(line)["timestamp"]["result_received"] for at, line in db.execute("SELECT at, line FROM tasks WHERE done IS NOT NULL"))
    return {"window_median_s": statistics.median(lags), "window_p99_s": lags[int(0.99 * (len(lags) - 1))], "window_max_s": lags[-1]}


def spread(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f} to {max(values):.{digits}f})"


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> Path:
    from dragon_campaign.journal.database import COMMIT_INTERVAL_S

    off = [r["tasks_per_s"] for r in rows if not r["journal"]]
    on = [r["tasks_per_s"] for r in rows if r["journal"]]
    with_journal = [r for r in rows if r["journal"]]
    cost = 1 - statistics.median(on) / statistics.median(off)
    lines = ["# The campaign journal's cost", "", *provenance(),
             f"- Code: commit {commit()}; dragonhpc {version('dragonhpc')}, SQLite {sqlite3.sqlite_version}",
             f"- {args.runs} runs of each configuration, alternating; {args.workers} workers, {args.in_flight} tasks in flight, "
             f"{args.seconds:g} s of no-op tasks per run; group commit every {COMMIT_INTERVAL_S:g} s (WAL, synchronous=FULL)",
             "", "| configuration | throughput, tasks/s: median (range) | group commits per run |", "|---|---|---|",
             f"| without the journal (results.jsonl only) | {spread(off)} | - |",
             f"| with the journal | {spread(on)} | {spread([r['commits'] for r in with_journal])} |",
             "", f"Cost of the journal at full dispatch speed: {cost:.1%} of throughput (medians; target: at most 10 %).",
             "", "The loss window: seconds from a result's arrival in the steering process to its commit, per run "
             "(a SIGKILL loses at most the results of this window; their tasks run again after --resume):", "",
             "| | median (range over runs) |", "|---|---|",
             f"| median over the run's results | {spread([r['window_median_s'] for r in with_journal], 3)} |",
             f"| 99th percentile | {spread([r['window_p99_s'] for r in with_journal], 3)} |",
             f"| longest | {spread([r['window_max_s'] for r in with_journal], 3)} |"]
    write_csv(args.output / "journal_cost.csv", rows, ["journal", "tasks_per_s", "tasks", "commits", "window_median_s", "window_p99_s", "window_max_s"])
    return write_report(args.output, "journal_cost", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each configuration (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="no-op workers (default 2)")
    parser.add_argument("--in-flight", type=int, default=256, help="tasks kept submitted and not taken (default 256)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of each run (default 5)")
    parser.add_argument("--output", type=Path, default=Path("results"), help="where the table goes (default results/)")
    args = parser.parse_args()
    require_dragon_runtime("journal_cost.py")
    use_dragon_processes()
    rows = []
    for run in range(args.runs):
        for journal in ((False, True) if run % 2 == 0 else (True, False)):
            rows.append(one_run(journal, args))
            print(f"run {run + 1}, journal {'on' if journal else 'off'}: {rows[-1]['tasks_per_s']:.0f} tasks/s", flush=True)
    print(f"Wrote {report(rows, args)}")


if __name__ == "__main__":
    main()
