"""Bounded memory: the store's live bytes over a campaign whose results travel as DDict proxies.

    PATH=$PWD/.venv/bin:$PATH dragon comparisons/bounded_memory.py [--tasks 10000] [--kept-tasks 2000] [--output results]

Each task returns an array of ``--kilobytes`` (default 1 MB); the task queue proxies it on the worker
through ``ddict_proxy_store`` (the frame serializer: the bytes go once into the node's buffer pool), and
the thinker resolves every result once and checks every byte, keeping ``--window`` tasks in flight.
Two runs in one invocation:

* ``proxystore_evict``: each proxy is evicted when the thinker resolves it, so the store holds only the
  results in flight (``--tasks`` tasks);
* ``kept``: proxies stay until the campaign ends and its ProxyStore store is closed, which drops their
  namespace (``--kept-tasks`` tasks, fewer: this run's memory grows with every task).

Live bytes (``DDictStore.live_bytes``: the buffer pool of this node, where the workers wrote, and the
DDict's managers) are sampled every ``--sample-every`` results, at the end, and after the close.
Writes <output>/bounded_memory.md, .csv and .png.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from common import provenance, require_dragon_runtime, use_dragon_processes, write_csv

MB = 2**20


def numbered_array(index: int, kilobytes: int) -> np.ndarray:
    """A result of ``kilobytes`` filled with ``index``, so the thinker can check every byte."""
    return np.full(kilobytes * 1024 // 8, float(index))


def run(mode: str, tasks: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One campaign; returns the samples (results consumed, seconds, live bytes)."""
    from ddict_store import DDictStore
    from ddict_store.connector import ddict_proxy_store
    from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool

    nbytes = args.kilobytes * 1024
    room = (tasks if mode == "kept" else 4 * args.window) * nbytes * 2 + 256 * MB  # Dragon rounds blocks to powers of two
    samples: list[dict[str, Any]] = []
    with DDictStore(buffer_bytes_per_node=room) as store, tempfile.TemporaryDirectory() as run_dir:
        proxystore = ddict_proxy_store(f"bounded-{mode}", store, register=True)
        queues = DragonQueues(proxystore_name=proxystore.name, proxystore_threshold=1000, proxystore_evict=mode == "evict")
        start = time.perf_counter()

        def sample(consumed: int, phase: str) -> None:
            live = store.live_bytes()
            samples.append({"mode": mode, "phase": phase, "consumed": consumed, "seconds": time.perf_counter() - start,
                            "buffer_bytes": live["buffers_this_node"], "ddict_bytes": live["ddict"]})

        with DragonTaskServer([numbered_array], queues, pools={"cpu": WorkerPool(workers=args.workers)}, run_dir=run_dir):
            sample(0, "start")
            submitted = 0
            for consumed in range(1, tasks + 1):
                while submitted < min(tasks, consumed - 1 + args.window):
                    queues.send_inputs(submitted, args.kilobytes, method="numbered_array", keep_inputs=False)
                    submitted += 1
                result = queues.get_result(timeout=300)
                if not result.success:
                    raise RuntimeError(f"task failed: {result.failure_info}")
                value = np.asarray(result.value)  # resolves the proxy (and evicts it, in the evicting run)
                if value.nbytes != nbytes or not np.all(value == value[0]):
                    raise RuntimeError(f"result {consumed} came back wrong")
                if consumed % args.sample_every == 0:
                    sample(consumed, "running")
            sample(tasks, "all consumed")
        proxystore.close()  # ddict_proxy_store's clear: the campaign's namespace goes
        sample(tasks, "store closed")
    return samples


def plot(samples: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for mode, label in (("evict", "proxystore_evict: evicted when resolved"), ("kept", "kept until the store closes")):
        rows = [row for row in samples if row["mode"] == mode]
        axis.plot([row["seconds"] for row in rows], [(row["buffer_bytes"] + row["ddict_bytes"]) / MB for row in rows],
                  marker=".", label=label)
    axis.set_xlabel("seconds since the campaign started")
    axis.set_ylabel("live bytes in the store (MB)")
    axis.set_title("Store memory over a campaign of proxied 1 MB results")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write_report(samples: list[dict[str, Any]], args: argparse.Namespace) -> Path:
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    write_csv(output / "bounded_memory.csv", samples)
    plot(samples, output / "bounded_memory.png")
    lines = ["# Bounded memory: live bytes of the store over a campaign of proxied results", "", *provenance(),
             f"- Versions: dragonhpc {version('dragonhpc')}, proxystore {version('proxystore')}, numpy {np.__version__}",
             f"- Workload: tasks returning {args.kilobytes} KB arrays, proxied on the worker through `ddict_proxy_store` "
             f"(threshold 1,000 bytes), {args.workers} workers, {args.window} tasks in flight; the thinker resolves every "
             "result once and checks every byte. Live bytes: this node's buffer pool plus the DDict's managers "
             f"(`DDictStore.live_bytes`), sampled every {args.sample_every} results.", "",
             "| Run | Tasks | Peak live MB | Live MB when all were consumed | Live MB after the store closed | Wall time (s) |",
             "|---|---|---|---|---|---|"]
    for mode, label in (("evict", "proxystore_evict"), ("kept", "kept")):
        rows = [row for row in samples if row["mode"] == mode]
        live = {row["phase"]: (row["buffer_bytes"] + row["ddict_bytes"]) / MB for row in rows}
        peak = max((row["buffer_bytes"] + row["ddict_bytes"]) / MB for row in rows)
        done = next(row for row in rows if row["phase"] == "all consumed")
        lines.append(f"| {label} | {done['consumed']:,} | {peak:.1f} | {live['all consumed']:.1f} | {live['store closed']:.1f} | {done['seconds']:.1f} |")
    lines += ["", "![live bytes over time](bounded_memory.png)", ""]
    report = output / "bounded_memory.md"
    report.write_text("\n".join(lines))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks of the evicting run")
    parser.add_argument("--kept-tasks", type=int, default=2_000, help="tasks of the run that keeps its proxies")
    parser.add_argument("--kilobytes", type=int, default=1024, help="size of each result")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--window", type=int, default=32, help="tasks in flight")
    parser.add_argument("--sample-every", type=int, default=100, help="results between two samples of live bytes")
    parser.add_argument("--output", default="results", help="folder for the .md, .csv and .png (default results/)")
    args = parser.parse_args()
    require_dragon_runtime("bounded_memory.py")
    use_dragon_processes()
    samples = run("evict", args.tasks, args)
    print(f"evicting run: {args.tasks} tasks done", flush=True)
    samples += run("kept", args.kept_tasks, args)
    print(write_report(samples, args).read_text())


if __name__ == "__main__":
    main()
