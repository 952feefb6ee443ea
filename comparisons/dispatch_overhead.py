"""Dispatch overhead: no-op round-trip latency and throughput, dragon_campaign against Colmena 0.7.2 + Parsl.

    bash run.sh ... is for campaigns; run this one directly under the runtime:
    PATH=$PWD/.venv/bin:$PATH dragon comparisons/dispatch_overhead.py [--workers 4] [--output results]

Both systems run the same no-op task with the same number of workers on this machine, one after the other
in the same invocation (Colmena in a plain-Python child process, since Parsl starts its own interchange and
workers). Latency: the median of N sequential submit-then-wait round trips, after a warm-up. Throughput:
N tasks submitted at once, then all results received; the median over repeats.
Writes <output>/dispatch_overhead.md and .csv.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from common import provenance, require_dragon_runtime, write_csv

WARMUP_TASKS = 50


def noop(x: Any) -> Any:
    return x


def measure(send: Callable[[int], None], receive: Callable[[], Any], args: argparse.Namespace) -> dict[str, Any]:
    """Latency and throughput of any queue pair with Colmena's send_inputs/get_result shape."""
    for i in range(WARMUP_TASKS):
        send(i)
        receive()
    round_trips = []
    for i in range(args.latency_tasks):
        start = time.perf_counter()
        send(i)
        receive()
        round_trips.append(time.perf_counter() - start)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for i in range(args.throughput_tasks):
            send(i)
        for _ in range(args.throughput_tasks):
            receive()
        rates.append(args.throughput_tasks / (time.perf_counter() - start))
    round_trips.sort()
    return {
        "round_trip_median_ms": statistics.median(round_trips) * 1e3,
        "round_trip_p90_ms": round_trips[int(0.9 * len(round_trips))] * 1e3,
        "throughput_tasks_per_s": statistics.median(rates),
        "throughput_runs": [round(r) for r in rates],
    }


def measure_dragon_campaign(args: argparse.Namespace) -> dict[str, Any]:
    import multiprocessing

    from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool

    multiprocessing.set_start_method("dragon", force=True)
    queues = DragonQueues()
    with TemporaryDirectory() as run_dir, DragonTaskServer([noop], queues, pools={"cpu": WorkerPool(workers=args.workers)}, run_dir=run_dir):
        return measure(lambda i: queues.send_inputs(i, method="noop"), lambda: queues.get_result(timeout=120), args)


def measure_colmena(args: argparse.Namespace) -> dict[str, Any]:
    """Colmena 0.7.2's PipeQueues and ParslTaskServer over a local HighThroughputExecutor."""
    from colmena.queue.python import PipeQueues
    from colmena.task_server.parsl import ParslTaskServer
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    queues = PipeQueues()
    with TemporaryDirectory() as run_dir:
        executor = HighThroughputExecutor(
            max_workers_per_node=args.workers, address="127.0.0.1", provider=LocalProvider(init_blocks=1, max_blocks=1)
        )
        server = ParslTaskServer([noop], queues, Config(executors=[executor], run_dir=run_dir))
        server.start()
        try:
            return measure(lambda i: queues.send_inputs(i, method="noop"), lambda: queues.get_result(timeout=120), args)
        finally:
            queues.send_kill_signal()
            server.join()


def write_report(rows: list[dict[str, Any]], args: argparse.Namespace) -> Path:
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    fields = ["system", "workers", "round_trip_median_ms", "round_trip_p90_ms", "throughput_tasks_per_s"]
    write_csv(output / "dispatch_overhead.csv", rows, fields)
    ours, peer = rows
    lines = [
        "# Dispatch overhead: no-op tasks",
        "",
        *provenance(),
        f"- Versions: dragonhpc {version('dragonhpc')}, dragon-campaign {version('dragon-campaign')}, "
        f"colmena {version('colmena')}, parsl {version('parsl')}",
        f"- Method: {WARMUP_TASKS} warm-up tasks; latency = median of {args.latency_tasks} sequential round trips "
        f"(send_inputs then get_result); throughput = {args.throughput_tasks} tasks submitted at once then all results "
        f"received, median of {args.repeats} repeats. Same no-op function and {args.workers} workers for both.",
        "",
        "| System | Workers | Round trip, median (ms) | Round trip, p90 (ms) | Throughput (tasks/s) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['system']} | {row['workers']} | {row['round_trip_median_ms']:.3f} | {row['round_trip_p90_ms']:.3f} "
            f"| {row['throughput_tasks_per_s']:,.0f} |"
        )
    lines += [
        "",
        f"dragon_campaign against Colmena + Parsl: round trip {peer['round_trip_median_ms'] / ours['round_trip_median_ms']:.1f}x "
        f"shorter, throughput {ours['throughput_tasks_per_s'] / peer['throughput_tasks_per_s']:.1f}x higher "
        f"(throughput runs: ours {ours['throughput_runs']}, Colmena {peer['throughput_runs']}).",
        "",
    ]
    report = output / "dispatch_overhead.md"
    report.write_text("\n".join(lines))
    return report


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4, help="workers for both systems (default 4)")
    parser.add_argument("--latency-tasks", type=int, default=200, help="sequential round trips (default 200)")
    parser.add_argument("--throughput-tasks", type=int, default=5000, help="tasks in flight at once (default 5000)")
    parser.add_argument("--repeats", type=int, default=3, help="throughput repeats (default 3)")
    parser.add_argument("--output", default="results", help="folder for the .md and .csv (default results/)")
    parser.add_argument("--peer", choices=["colmena"], help=argparse.SUPPRESS)  # internal: the child process
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.peer == "colmena":
        print(json.dumps(measure_colmena(args)))
        return
    require_dragon_runtime("dispatch_overhead.py")
    print(f"Measuring dragon_campaign with {args.workers} workers ...", flush=True)
    ours = {"system": "dragon_campaign (Dragon pools)", "workers": args.workers, **measure_dragon_campaign(args)}
    print(json.dumps(ours), flush=True)
    print(f"Measuring Colmena 0.7.2 + Parsl HTEX with {args.workers} workers ...", flush=True)
    child = [sys.executable, __file__, "--peer", "colmena", *sys.argv[1:]]
    completed = subprocess.run(child, capture_output=True, text=True, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    if completed.returncode != 0:
        sys.exit(f"The Colmena measurement failed:\n{completed.stderr[-4000:]}")
    peer = {"system": "Colmena 0.7.2 + Parsl HTEX", "workers": args.workers, **json.loads(completed.stdout.strip().splitlines()[-1])}
    print(json.dumps(peer), flush=True)
    report = write_report([ours, peer], args)
    print(report.read_text())


if __name__ == "__main__":
    main()
