"""Node-local relays on two nodes: what a relay saves the steering process, and what it costs.

    bash comparisons/two_nodes.sh comparisons/relay_dispatch.py [--workers 16] [--tasks 4000] [--duration 0.2]
        [--seconds 10] [--repeats 3]

One steering process (DragonQueues + DragonTaskServer) on the first node of a two-node runtime (the multi-node
tier's emulated cluster) runs two CPU pools of W workers each, spread over both nodes: *direct*, whose workers
on the other node read their task queue and put their results through Dragon's transport one message each, and
*relayed* (``WorkerPool(relayed=True)``), whose workers there are reached through that node's relay
(:mod:`dragon_campaign.server.relay`). The same functions are registered once per pool, so both run in one
runtime, one after the other, alternating, ``--repeats`` times:

* **no-ops**: ``--tasks`` no-op tasks submitted at once and drained: throughput (tasks / wall time from the
  first submission to the last result taken).
* **steered sleeps**: W tasks of ``--duration`` seconds in flight, the thinker submitting one per result, for
  about ``--seconds`` of work per worker: utilization (time inside tasks / W x wall time).

For each: the steering process's CPU per task (every thread), and the whole machine's (both emulated nodes share
this VM, so ``/proc/stat`` counts every process of the runtime: workers, relays, Dragon's services and transport).
Medians of the repeats. Writes <output>/relay_dispatch.md and .csv.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from common import Steps, cpu_seconds, provenance, two_node_hosts, write_csv, write_report

MODES = ("direct", "relayed")
IDLE_S = 5.0


def noop(x: object = None) -> object:
    return x


def sleep_task(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def machine_cpu_seconds() -> float:
    """CPU seconds every core of this machine spent outside idle and iowait (all processes, the kernel's too)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def timed(run: Callable[[], tuple[int, float, list[Any]]]) -> dict[str, Any]:
    """Run a cell; its throughput and CPU per task (steering process, whole machine)."""
    steering, machine, start = cpu_seconds(), machine_cpu_seconds(), time.perf_counter()
    tasks, busy, results = run()
    wall = time.perf_counter() - start
    steering, machine = cpu_seconds() - steering, machine_cpu_seconds() - machine
    here = socket.gethostname()
    return {"tasks": tasks, "wall_s": wall, "tasks_per_s": tasks / wall, "busy_s": busy,
            "failed": sum(not r.success for r in results), "other_node_share": sum(r.worker_info.hostname != here for r in results) / tasks,
            "steering_cpu_us_per_task": steering / tasks * 1e6, "machine_cpu_us_per_task": machine / tasks * 1e6}


def no_ops(queues: Any, mode: str, count: int) -> dict[str, Any]:
    def run() -> tuple[int, float, list[Any]]:
        for i in range(count):
            queues.send_inputs(i, method=f"noop_{mode}")
        return count, 0.0, [queues.get_result(timeout=600) for _ in range(count)]

    return {"cell": "no-ops", "mode": mode, **timed(run)}


def steered(queues: Any, mode: str, workers: int, duration: float, rounds: int) -> dict[str, Any]:
    total = workers * rounds

    def run() -> tuple[int, float, list[Any]]:
        for _ in range(workers):
            queues.send_inputs(duration, method=f"sleep_{mode}")
        results = []
        for submitted in range(workers, total + workers):
            results.append(queues.get_result(timeout=600))
            if submitted < total:
                queues.send_inputs(duration, method=f"sleep_{mode}")
        return total, sum(r.timestamp.compute_ended - r.timestamp.compute_started for r in results if r.success), results

    row = {"cell": f"{duration:g} s sleeps, steered", "mode": mode, **timed(run)}
    row["utilization"] = row["busy_s"] / (workers * row["wall_s"])
    return row


def report(rows: list[dict[str, Any]], args: argparse.Namespace, hosts: list[str], idle_cores: float) -> Path:
    output = Path(args.output)
    write_csv(output / "relay_dispatch.csv", rows, fields=list(dict.fromkeys(key for row in rows for key in row)))
    lines = ["# Node-local relays on two nodes", "", *provenance("bash comparisons/two_nodes.sh"),
             f"- Runtime: two nodes ({', '.join(hosts)}): network namespaces on one VM joined by a bridge, Dragon's SSH launcher "
             "with HSTA over TCP (the multi-node tier's cluster); the steering process on the first.",
             f"- Versions: dragonhpc {version('dragonhpc')}, dragon-campaign {version('dragon-campaign')}",
             f"- Method: two CPU pools of {args.workers} workers each, spread over both nodes, in one task server: *direct* (the "
             "other node's workers read their queue and send each result through Dragon's transport) and *relayed* "
             "(`WorkerPool(relayed=True)`: through that node's relay). Cells alternate between them, "
             f"{args.repeats} repeats, medians. No-ops: {args.tasks:,} submitted at once and drained. Steered sleeps: "
             f"{args.workers} tasks of {args.duration:g} s in flight, one submitted per result taken, about {args.seconds:g} s of "
             "work per worker. Steering CPU: the steering process's (every thread) per task; machine CPU: every process of "
             "both emulated nodes (they share this VM: workers, relays, Dragon's services and transport) per task.",
             f"- The runtime at rest (both pools started, every worker idle, {IDLE_S:g} s): {idle_cores:.2f} of this machine's "
             f"{os.cpu_count()} cores busy.",
             "", "| Cell | Mode | Tasks/s | Utilization | Steering CPU per task (us) | Machine CPU per task (us) | On the other node |",
             "|---|---|---|---|---|---|---|"]
    for cell in dict.fromkeys(row["cell"] for row in rows):
        for mode in MODES:
            mine = [row for row in rows if row["cell"] == cell and row["mode"] == mode]
            if not mine:
                continue
            median = {key: statistics.median(row[key] for row in mine) for key in mine[0] if isinstance(mine[0][key], float | int)}
            utilization = f"{median['utilization'] * 100:.2f} %" if "utilization" in median else ""
            failed = f" ({int(median['failed'])} failed)" if median["failed"] else ""
            lines.append(f"| {cell} | {mode} | {median['tasks_per_s']:,.0f}{failed} | {utilization} | {median['steering_cpu_us_per_task']:,.0f} | "
                         f"{median['machine_cpu_us_per_task']:,.0f} | {median['other_node_share'] * 100:.0f} % |")
    lines += ["", "Every repeat (tasks/s; steering, machine CPU us per task):", ""]
    lines += [f"- {row['cell']}, {row['mode']}: {row['tasks_per_s']:,.0f}; {row['steering_cpu_us_per_task']:,.0f}, "
              f"{row['machine_cpu_us_per_task']:,.0f}" + (f"; utilization {row['utilization'] * 100:.2f} %" if "utilization" in row else "")
              for row in rows]
    return write_report(output, "relay_dispatch", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=16, help="workers per pool, spread over both nodes (default 16)")
    parser.add_argument("--tasks", type=int, default=4000, help="no-op tasks per cell (default 4000)")
    parser.add_argument("--duration", type=float, default=0.2, help="steered sleep tasks' duration in s (default 0.2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="steered work per worker and cell, in s (default 10)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="results", help="folder for the .md and .csv (default results/)")
    args = parser.parse_args()
    hosts = two_node_hosts("relay_dispatch.py")
    from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool

    pools = {mode: WorkerPool(workers=args.workers, relayed=mode == "relayed") for mode in MODES}
    methods = [(function, {"pool": mode, "name": f"{name}_{mode}"}) for mode in MODES for name, function in (("noop", noop), ("sleep", sleep_task))]
    rows: list[dict[str, Any]] = []
    steps = Steps(args.repeats * 2 * len(MODES))
    queues = DragonQueues()
    with TemporaryDirectory() as run_dir:
        server = DragonTaskServer(methods, queues, pools=pools, run_dir=run_dir, shutdown_grace=30).start()
        try:
            started = time.perf_counter()
            while server.worker_count(ready=True) < 2 * args.workers and time.perf_counter() - started < 600:
                time.sleep(0.1)
            for mode in MODES:  # warm-up: the methods' running averages, every worker's first task
                no_ops(queues, mode, 2 * args.workers)
            time.sleep(2.0)  # every worker idle: what the runtime itself costs this machine
            idle = machine_cpu_seconds()
            time.sleep(IDLE_S)
            idle_cores = (machine_cpu_seconds() - idle) / IDLE_S
            for repeat in range(args.repeats):
                for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
                    for row in (no_ops(queues, mode, args.tasks),
                                steered(queues, mode, args.workers, args.duration, max(5, round(args.seconds / args.duration)))):
                        rows.append({"repeat": repeat, **row})
                        steps.done(json.dumps(rows[-1]))
        finally:
            server.stop()
    print(report(rows, args, hosts, idle_cores).read_text())


if __name__ == "__main__":
    main()
