"""Dispatch overhead: no-op round-trip latency and throughput, dragon_campaign against the systems users
would pick instead, in the same invocation.

    PATH=$PWD/.venv/bin:$PATH dragon comparisons/dispatch_overhead.py [--workers 4] [--peers ...] [--output results]

Every system runs the same no-op function with the same number of worker processes on this machine, one
after the other: dragon_campaign (DragonQueues + DragonTaskServer) and Dragon's native ``Pool`` (the floor
of process pools on this runtime) in this process, under the runtime; Ray tasks, Dask distributed
(``LocalCluster`` of processes, one thread each), ``concurrent.futures.ProcessPoolExecutor`` and
Colmena 0.7.2 + Parsl HTEX each in a plain-Python child process (they start their own workers).
Latency: the median of N sequential submit-then-wait round trips, after a warm-up. Throughput: tasks
completed per second with ``--in-flight`` tasks always submitted and not yet taken (one more submitted for
every result taken) for ``--seconds``, then the last ones drained; the median over repeats. For
dragon_campaign the report also splits the sequential round trips into steps, from the results' timestamps.
Writes <output>/dispatch_overhead.md and .csv.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, NamedTuple

from common import outside_runtime_env, provenance, require_dragon_runtime, use_dragon_processes, write_csv

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
        for i in range(args.in_flight):
            send(i)
        done = 0
        while time.perf_counter() - start < args.seconds:  # one more for every result: always in_flight waiting or running
            receive()
            send(done)
            done += 1
        for _ in range(args.in_flight):
            receive()
        rates.append((done + args.in_flight) / (time.perf_counter() - start))
    round_trips.sort()
    return {
        "round_trip_median_ms": statistics.median(round_trips) * 1e3,
        "round_trip_p90_ms": round_trips[int(0.9 * len(round_trips))] * 1e3,
        "throughput_tasks_per_s": statistics.median(rates),
        "throughput_runs": [round(r) for r in rates],
    }


# Where a sequential round trip of dragon_campaign goes: consecutive steps of a result's timestamps, and the
# moment the thinker had it (the last step: completing the result, results.jsonl, delivery, waking the thinker).
HOPS = [
    ("submitted, dispatched", "created", "dispatched"),
    ("to the worker", "dispatched", "input_received"),
    ("worker unpacks and runs it", "input_received", "compute_ended"),
    ("worker sends", "compute_ended", "result_sent"),
    ("to the steering process", "result_sent", "result_received"),
    ("completed, logged, to the thinker", "result_received", "taken"),
]


def measure_dragon_campaign(args: argparse.Namespace) -> dict[str, Any]:
    from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool

    queues = DragonQueues()
    stamps: list[dict[str, float]] = []  # of the sequential round trips only (the throughput runs keep nothing)
    sequential = range(WARMUP_TASKS, WARMUP_TASKS + args.latency_tasks)

    def receive() -> None:
        result = queues.get_result(timeout=120)
        if len(stamps) < sequential.stop:
            stamps.append({**result.timestamp.model_dump(), "taken": time.time()})

    with TemporaryDirectory() as run_dir, DragonTaskServer([noop], queues, pools={"cpu": WorkerPool(workers=args.workers)}, run_dir=run_dir):
        figures = measure(lambda i: queues.send_inputs(i, method="noop"), receive, args)
    figures["hops_us"] = {name: statistics.median(stamps[i][end] - stamps[i][start] for i in sequential) * 1e6
                          for name, start, end in HOPS}
    return figures


def measure_futures(submit: Callable[[int], Any], wait: Callable[[Any], Any], args: argparse.Namespace) -> dict[str, Any]:
    """``measure`` for a futures API: submit returns a future, wait takes its value; oldest first."""
    pending: deque[Any] = deque()
    return measure(lambda i: pending.append(submit(i)), lambda: wait(pending.popleft()), args)


def measure_dragon_pool(args: argparse.Namespace) -> dict[str, Any]:
    from dragon.native.pool import Pool

    pool = Pool(processes=args.workers)
    try:
        return measure_futures(lambda i: pool.apply_async(noop, (i,)), lambda future: future.get(timeout=120), args)
    finally:
        pool.close()
        pool.join()


def measure_process_pool(args: argparse.Namespace) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        return measure_futures(lambda i: pool.submit(noop, i), lambda future: future.result(timeout=120), args)


def measure_ray(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, object_store_memory=2 * 2**30)
    try:
        remote_noop = ray.remote(noop)
        return measure_futures(lambda i: remote_noop.remote(i), lambda ref: ray.get(ref, timeout=120), args)
    finally:
        ray.shutdown()


def measure_dask(args: argparse.Namespace) -> dict[str, Any]:
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        return measure_futures(lambda i: client.submit(noop, i, pure=False), lambda future: future.result(timeout=120), args)


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


class System(NamedTuple):
    """A system in the table: its label, how to measure it, and whether it runs in a plain-Python child process."""

    label: str
    measure: Callable[[argparse.Namespace], dict[str, Any]]
    child: bool


SYSTEMS = {
    "dragon_campaign": System("dragon_campaign (Dragon pools)", measure_dragon_campaign, child=False),
    "dragon-pool": System("Dragon native Pool (dragon.native.pool)", measure_dragon_pool, child=False),
    "process-pool": System("concurrent.futures.ProcessPoolExecutor", measure_process_pool, child=True),
    "ray": System("Ray tasks", measure_ray, child=True),
    "dask": System("Dask distributed (LocalCluster, processes)", measure_dask, child=True),
    "colmena": System("Colmena 0.7.2 + Parsl HTEX", measure_colmena, child=True),
}


def versions() -> str:
    packages = ["dragonhpc", "dragon-campaign", "ray", "dask", "distributed", "colmena", "parsl"]
    return ", ".join(f"{name} {version(name)}" for name in packages)


def write_report(rows: list[dict[str, Any]], args: argparse.Namespace) -> Path:
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    fields = ["system", "workers", "round_trip_median_ms", "round_trip_p90_ms", "throughput_tasks_per_s", "throughput_runs"]
    write_csv(output / "dispatch_overhead.csv", rows, fields)
    lines = [
        "# Dispatch overhead: no-op tasks",
        "",
        *provenance(),
        f"- Versions: {versions()}",
        f"- Method: {WARMUP_TASKS} warm-up tasks; latency = median of {args.latency_tasks} sequential round trips "
        f"(submit, then wait for that result); throughput = tasks completed per second with {args.in_flight} always in "
        f"flight (one submitted per result taken) for {args.seconds:g} s, then drained; median of {args.repeats} repeats. Same no-op function and {args.workers} worker processes "
        "for every system; each system alone on the machine while it is measured.",
        "",
        "| System | Workers | Round trip, median (ms) | Round trip, p90 (ms) | Throughput (tasks/s) | Throughput runs |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['system']} | {row['workers']} | {row['round_trip_median_ms']:.3f} | {row['round_trip_p90_ms']:.3f} "
            f"| {row['throughput_tasks_per_s']:,.0f} | {', '.join(f'{r:,}' for r in row['throughput_runs'])} |"
        )
    ours = rows[0]
    lines += ["", "Where a round trip of dragon_campaign goes (medians over the sequential round trips, from each result's "
              "timestamps; the steps do not add up to the median round trip exactly):", "",
              "| " + " | ".join(ours["hops_us"]) + " |", "|" + "---|" * len(ours["hops_us"]),
              "| " + " | ".join(f"{us:.0f} us" for us in ours["hops_us"].values()) + " |"]
    lines += ["", f"Targets for dragon_campaign: at most 0.3 ms round trip ({ours['round_trip_median_ms']:.3f} ms: "
              f"{'met' if ours['round_trip_median_ms'] <= 0.3 else 'missed'}), at least 10,000 tasks/s "
              f"({ours['throughput_tasks_per_s']:,.0f}: {'met' if ours['throughput_tasks_per_s'] >= 10_000 else 'missed'})."]
    for row in rows[1:]:
        lines.append(f"- against {row['system']}: round trip "
                     f"{times(ours['round_trip_median_ms'], row['round_trip_median_ms'], 'shorter', 'longer', lower_is_better=True)}, "
                     f"throughput {times(ours['throughput_tasks_per_s'], row['throughput_tasks_per_s'], 'higher', 'lower')}.")
    lines.append("")
    report = output / "dispatch_overhead.md"
    report.write_text("\n".join(lines))
    return report


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4, help="worker processes for every system (default 4)")
    parser.add_argument("--latency-tasks", type=int, default=500, help="sequential round trips (default 500)")
    parser.add_argument("--in-flight", type=int, default=1000, help="tasks kept in flight for throughput (default 1000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long throughput keeps them in flight (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="throughput repeats (default 3)")
    parser.add_argument("--peers", nargs="+", choices=[name for name in SYSTEMS if name != "dragon_campaign"],
                        default=[name for name in SYSTEMS if name != "dragon_campaign"],
                        help="the systems measured beside dragon_campaign (default: all)")
    parser.add_argument("--output", default="results", help="folder for the .md and .csv (default results/)")
    parser.add_argument("--child", choices=list(SYSTEMS), help=argparse.SUPPRESS)  # internal: measure one peer in this process
    return parser.parse_args()


def times(ours: float, theirs: float, better: str, worse: str, lower_is_better: bool = False) -> str:
    """How ours compares, as a factor above 1 and the word that says which way ("2.1x shorter", "1.3x lower")."""
    ahead = ours < theirs if lower_is_better else ours > theirs
    factor = max(ours, theirs) / max(min(ours, theirs), 1e-12)
    return f"{factor:.1f}x {better if ahead else worse}"


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(SYSTEMS[args.child].measure(args)))
        return
    require_dragon_runtime("dispatch_overhead.py")
    use_dragon_processes()
    rows = []
    for name in ["dragon_campaign", *args.peers]:
        system = SYSTEMS[name]
        print(f"Measuring {system.label} with {args.workers} workers ...", flush=True)
        if system.child:
            figures = run_child(name)
        else:
            figures = system.measure(args)
        rows.append({"system": system.label, "workers": args.workers, **figures})
        print(json.dumps(rows[-1]), flush=True)
    report = write_report(rows, args)
    print(report.read_text())


def run_child(name: str) -> dict[str, Any]:
    """Measure a peer in a plain-Python child process (no Dragon start method, its own workers)."""
    child = [sys.executable, __file__, "--child", name, *sys.argv[1:]]  # PATH: Parsl's interchange, Ray's binaries
    completed = subprocess.run(child, capture_output=True, text=True, env=outside_runtime_env(), timeout=1800)
    if completed.returncode != 0:
        sys.exit(f"The {name} measurement failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
