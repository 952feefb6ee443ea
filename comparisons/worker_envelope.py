"""Worker envelope: utilization and the runtime's cost per task at 8, 32 and 128 workers.

    PATH=$PWD/.venv/bin:$PATH dragon comparisons/worker_envelope.py [--workers 8 32 128] [--durations 0.05 0.2 1]
        [--modes steered bag]

One steering process (DragonQueues + DragonTaskServer, one CPU pool) on this node keeps W workers busy with
sleep tasks of d seconds until W x rounds tasks have run (rounds: enough for about ``--seconds`` of work,
default 30, at least 5), in two ways:

* **steered**: the thinker submits W tasks, then one more for every result it takes, so every task waits
  for the round trip through the thinker (the hardest case: a thinker that decides each task from the last
  result). The W first tasks start together, so for the first rounds their results arrive together and
  wait for each other; a cell of 10 rounds mostly measures that start (the idle-time table shows it),
  hence 30 s.
* **bag**: every task is submitted at once and each worker holds one task behind the one it runs
  (``WorkerPool(max_prefetch=1, prefetch_seconds=60)``): how a campaign runs an ensemble it has already
  chosen, and how RADICAL-Pilot measures its utilization (a bag of tasks).

The tasks sleep, so the workers need no core while they run and the figure is the runtime's overhead
alone, even with 128 workers on two cores.

* Utilization: the time workers spent inside tasks (each task's compute_started to compute_ended, as the
  worker stamped them) over W x the campaign's wall time, from the first submission to the last result
  taken. RADICAL-Pilot with Flux and Dragon reports 99.6 % on Frontier.
* Steering CPU per task: the steering process's user + system CPU time over the same window (every
  thread: the thinker's submissions and gets, the dispatch, the result receiver, results.jsonl), per task.
* Workers' CPU per task: the CPU time of every worker process over the same window (from ``/proc``), per
  task, less the task itself (a sleep): taking tasks, sending results, waiting, watching for cancellations.
* Where the workers' idle time goes: before their first task (the W first dispatches), between tasks, and
  after their last one until the thinker took the last result (the workers' ends drift apart by each one's
  waits, so the last round ends over a spread of some 0.1-0.5 s).
* Where a worker's wait between two tasks goes: the mean of each step from the end of a task to the start
  of the next one, from the timestamps every result carries (worker and steering process share this node's
  clock): the result's way to the steering process, the thinker taking it and submitting the next task, that
  task's dispatch, its way to a worker, and the worker unpacking it (steered cells only).

Writes <output>/worker_envelope.md, .csv and .png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from importlib.metadata import version
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from common import Steps, cpu_seconds, provenance, pyplot, require_dragon_runtime, use_dragon_processes, write_csv, write_report


def sleep_task(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


MODES = ("steered", "bag")
BAG_PREFETCH_S = 60.0  # a bag's worker holds one task (of up to a minute) behind the one it runs


def processes_cpu() -> dict[int, float]:
    """User + system CPU seconds of every process on this node, by pid."""
    from dragon_campaign.launch import proc_stat

    tick = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := proc_stat(int(entry.name))) is not None:  # None: gone meanwhile
            cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return cpu


# The steps from the end of one task to the start of the task submitted for its result (see the docstring).
STEPS = ("worker sends", "to the steering process", "thinker takes it", "next submitted", "dispatched",
         "to a worker", "worker unpacks")


def measure(queues: Any, workers: int, duration: float, rounds: int, mode: str) -> dict[str, Any]:
    """Keep every worker busy for ``rounds`` tasks of ``duration`` seconds each; utilization and CPU per task."""
    total = workers * rounds
    before_cpu = processes_cpu()
    cpu, start, began = cpu_seconds(), time.perf_counter(), time.time()
    submitted = workers if mode == "steered" else total
    for _ in range(submitted):
        queues.send_inputs(duration, method="sleep_task")
    busy, failed = 0.0, 0
    steps: dict[str, list[float]] = {step: [] for step in STEPS}
    handed: dict[str, tuple[Any, float]] = {}  # task id -> the timestamps of the result it was submitted for, and when taken
    first: dict[Any, float] = {}  # worker -> when its first task started
    last: dict[Any, float] = {}  # worker -> when its last task ended
    for _ in range(total):
        result = queues.get_result(timeout=600)
        taken = time.time()
        if submitted < total:
            next_id = queues.send_inputs(duration, method="sleep_task")
            submitted += 1
            handed[next_id] = (result.timestamp, taken)
        if result.success:
            busy += result.timestamp.compute_ended - result.timestamp.compute_started
            worker = (result.worker_info.worker, result.worker_info.pid)
            first[worker] = min(first.get(worker, math.inf), result.timestamp.compute_started)
            last[worker] = max(last.get(worker, 0.0), result.timestamp.compute_ended)
        else:
            failed += 1
        if result.task_id in handed:  # the task submitted for a result: the steps from that result's end to this start
            before, took = handed.pop(result.task_id)
            now = result.timestamp
            for step, seconds in zip(STEPS, (before.result_sent - before.compute_ended, before.result_received - before.result_sent,
                                             took - before.result_received, now.created - took, now.dispatched - now.created,
                                             now.input_received - now.dispatched, now.compute_started - now.input_received), strict=True):
                steps[step].append(seconds)
    wall, ended = time.perf_counter() - start, time.time()
    cpu = cpu_seconds() - cpu
    after_cpu = processes_cpu()
    workers_cpu = sum(after_cpu.get(pid, 0.0) - before_cpu.get(pid, 0.0) for _, pid in first)
    worker_time = workers * wall
    idle = worker_time - busy  # worker time outside tasks: before the first, between tasks, after the last
    before = sum(started - began for started in first.values()) + (workers - len(first)) * wall
    after = sum(ended - end for end in last.values())
    return {"workers": workers, "mode": mode, "task_s": duration, "tasks": total, "failed": failed, "wall_s": wall,
            "utilization": busy / worker_time, "steering_cpu_us_per_task": cpu / total * 1e6,
            "workers_cpu_us_per_task": workers_cpu / total * 1e6,
            "steering_cores": cpu / wall, "idle_before_first_pct": before / worker_time * 100,
            "idle_between_pct": (idle - before - after) / worker_time * 100, "idle_after_last_pct": after / worker_time * 100, **{f"{step}_ms": statistics.fmean(values) * 1e3 for step, values in steps.items() if values}}


def report(rows: list[dict[str, Any]], args: argparse.Namespace, startup: dict[tuple[int, str], float]) -> Path:
    output = Path(args.output)
    write_csv(output / "worker_envelope.csv", rows, fields=list(dict.fromkeys(key for row in rows for key in row)))
    durations = sorted({row["task_s"] for row in rows})
    cell = {(row["workers"], row["mode"], row["task_s"]): row for row in rows}
    lines = ["# Worker envelope: utilization and the runtime's cost per task", "", *provenance(),
             f"- Versions: dragonhpc {version('dragonhpc')}, dragon-campaign {version('dragon-campaign')}",
             f"- Method: W workers in one CPU pool on this node run sleep tasks of d seconds, about {args.seconds:g} s of work "
             "per worker and cell (at least 5 rounds). *steered*: W in flight at all times, the thinker submitting one task "
             "per result it takes. *bag*: every task submitted at once, each worker holding one task behind the one it runs "
             f"(`WorkerPool(max_prefetch=1, prefetch_seconds={BAG_PREFETCH_S:g})`), as RADICAL-Pilot measures. Utilization = "
             "time inside tasks (worker timestamps) / (W x wall time from the first submission to the last result taken). "
             "Steering CPU = the steering process's CPU time (every thread) over the same window, per task; workers' CPU = "
             "that of every worker process (the tasks sleep, so it is the runtime's share), per task.",
             "", "| Workers | Mode | " + " | ".join(f"{d:g} s tasks: utilization, steering / workers' CPU per task" for d in durations)
             + " | Pool start (s) |", "|---|---|" + "---|" * (len(durations) + 1)]
    for workers, mode in sorted(startup, key=lambda key: (key[0], MODES.index(key[1]))):
        cells = []
        for d in durations:
            row = cell.get((workers, mode, d))
            cells.append("" if row is None else f"{row['utilization'] * 100:.2f} %, {row['steering_cpu_us_per_task']:,.0f} / "
                         f"{row['workers_cpu_us_per_task']:,.0f} us" + (f" ({row['failed']} failed)" if row["failed"] else ""))
        lines.append(f"| {workers} | {mode} | " + " | ".join(cells) + f" | {startup[workers, mode]:.1f} |")
    lines += ["", "Where a worker's wait between two tasks goes in the steered cells (mean ms of each step, from the results' "
              "timestamps):", "", "| Workers | Task (s) | " + " | ".join(STEPS) + " | sum |", "|---|---|" + "---|" * (len(STEPS) + 1)]
    for row in rows:
        if all(f"{step}_ms" in row for step in STEPS):
            means = [row[f"{step}_ms"] for step in STEPS]
            lines.append(f"| {row['workers']} | {row['task_s']:g} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {sum(means):.3f} |")
    lines += ["", "Where the workers' idle time goes (% of worker time: waiting for the first task, between tasks, and after "
              "the last one until the thinker took the last result):", "",
              "| Workers | Mode | Task (s) | Before the first | Between tasks | After the last | Utilization |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {row['workers']} | {row['mode']} | {row['task_s']:g} | {row['idle_before_first_pct']:.2f} % | {row['idle_between_pct']:.2f} % | "
              f"{row['idle_after_last_pct']:.2f} % | {row['utilization'] * 100:.2f} % |" for row in rows]
    biggest = max(workers for workers, _ in startup)
    targets = [row for row in rows if row["workers"] == biggest and row["task_s"] == max(durations)]
    if targets:
        lines += ["", f"Target: at least 99 % at {max(durations):g} s tasks with {biggest} workers: " + "; ".join(
            f"{row['mode']} {row['utilization'] * 100:.2f} % ({'met' if row['utilization'] >= 0.99 else 'missed'})" for row in targets)
            + ". RADICAL-Pilot + Flux + Dragon reports 99.6 % on Frontier (bags of tasks)."]
    return write_report(output, "worker_envelope", lines, lambda path: plot(rows, path))


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for workers, mode in dict.fromkeys((row["workers"], row["mode"]) for row in rows):
        mine = sorted((row for row in rows if (row["workers"], row["mode"]) == (workers, mode)), key=lambda row: row["task_s"])
        style = {"marker": "o", "linestyle": "-" if mode == "steered" else "--", "label": f"{workers} workers, {mode}"}
        left.plot([r["task_s"] for r in mine], [r["utilization"] * 100 for r in mine], **style)
        right.plot([r["task_s"] for r in mine], [r["steering_cpu_us_per_task"] for r in mine], **style)
    left.axhline(99.6, color="gray", linestyle=":", label="RADICAL-Pilot + Flux + Dragon (Frontier)")
    for axis, label in ((left, "Utilization (%)"), (right, "Steering CPU per task (us)")):
        axis.set_xscale("log")
        axis.set_xlabel("Task duration (s)")
        axis.set_ylabel(label)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32, 128], help="pool sizes (default 8 32 128)")
    parser.add_argument("--durations", type=float, nargs="+", default=[0.05, 0.2, 1.0], help="task durations in s")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="steered, bag or both (default)")
    parser.add_argument("--seconds", type=float, default=30.0, help="work per cell, in task-seconds per worker (default 30)")
    parser.add_argument("--output", default="results", help="folder for the .md, .csv and .png (default results/)")
    args = parser.parse_args()
    require_dragon_runtime("worker_envelope.py")
    use_dragon_processes()
    from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool

    rows: list[dict[str, Any]] = []
    startup: dict[tuple[int, str], float] = {}
    steps = Steps(len(args.workers) * len(args.modes) * len(args.durations))
    for workers in args.workers:
        for mode in args.modes:
            pool = WorkerPool(workers=workers) if mode == "steered" else WorkerPool(workers=workers, max_prefetch=1, prefetch_seconds=BAG_PREFETCH_S)
            queues = DragonQueues()
            with TemporaryDirectory() as run_dir:
                start = time.perf_counter()
                server = DragonTaskServer([sleep_task], queues, pools={"cpu": pool}, run_dir=run_dir, shutdown_grace=30).start()
                try:
                    while server.worker_count("cpu", ready=True) < workers and time.perf_counter() - start < 600:
                        time.sleep(0.1)
                    startup[workers, mode] = time.perf_counter() - start
                    for duration in args.durations:
                        rows.append(measure(queues, workers, duration, max(5, math.ceil(args.seconds / duration)), mode))
                        steps.done(json.dumps(rows[-1]))
                finally:
                    server.stop()
    print(report(rows, args, startup).read_text())


if __name__ == "__main__":
    main()
