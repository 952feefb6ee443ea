"""Where the steering process's time goes per task, at full throughput: py-spy samples mapped to steps.

    PATH=$PWD/.venv/bin:$PATH dragon comparisons/steering_profile.py [--workers 4] [--tasks 20000] [--repeats 3]

The thinker submits ``--tasks`` no-op tasks at once and takes every result, ``--repeats`` times, while
py-spy samples the steering process (``--gil``: only the thread holding the GIL, i.e. Python work; 250 Hz,
non-blocking). Each sample is put in the step whose frame it finds first, innermost out (the table's
order); the step's share of the samples times the process's CPU time per task (getrusage, every thread)
gives microseconds per task. What the GIL-holding samples do not cover is time outside the interpreter:
Dragon's channel operations while they wait, the kernel, and the receiver's idle looks.
Writes <output>/steering_profile.md and .csv.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from common import cpu_seconds, provenance, require_dragon_runtime, use_dragon_processes, write_csv

# (step, what a frame's text contains); the first step with a frame in a sample's stack, innermost out
STEPS = [
    ("Dragon queue calls (put, get, message count)", ("dragon/native/queue.py", "dragon/fli", "server/reader.py")),
    ("results.jsonl (JSON line per result)", ("ResultLog.append",)),
    ("receive: unpickle a worker's message, complete the Result", ("_on_results", "DragonTaskServer.complete", "DragonTaskServer.finish")),
    ("dispatch: pick workers, pop the heap, task messages", ("DragonWorkers.take", "_dispatch")),
    ("submit: Result record, pickled inputs, heap push", ("DragonQueues.send_inputs",)),
    ("delivery: results to the thinker", ("DragonQueues.deliver", "DragonQueues.get_result")),
    ("worker monitor (joins the workers)", ("_monitor_loop",)),
    ("thinker loop", ("steering_profile.py",)),
]
OTHER = "other"


def noop(x: Any) -> Any:
    return x


def classify(stack: list[str]) -> str:
    for frame in reversed(stack):
        for step, needles in STEPS:
            if any(needle in frame for needle in needles):
                return step
    return OTHER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="results", help="folder for the .md and .csv (default results/)")
    args = parser.parse_args()
    require_dragon_runtime("steering_profile.py")
    spy_binary = shutil.which("py-spy")
    if spy_binary is None:
        sys.exit("py-spy not found: pip install py-spy (the bench extra has it)")
    use_dragon_processes()
    from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool

    queues = DragonQueues()
    with TemporaryDirectory() as folder, DragonTaskServer([noop], queues, pools={"cpu": WorkerPool(workers=args.workers)}, run_dir=folder):
        for i in range(200):  # warm-up: workers up, method's running average known
            queues.send_inputs(i, method="noop")
            queues.get_result(timeout=120)
        raw = Path(folder) / "samples.txt"
        spy = subprocess.Popen([spy_binary, "record", "--pid", str(os.getpid()), "--rate", "250", "--format", "raw", "--output", str(raw),
                                "--nonblocking", "--gil"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(2)  # attached
        if spy.poll() is not None:
            sys.exit(f"py-spy could not sample this process (it needs ptrace: root, or CAP_SYS_PTRACE):\n{spy.stdout.read() if spy.stdout else ''}")
        cpu, start = cpu_seconds(), time.perf_counter()
        for _ in range(args.repeats):
            for i in range(args.tasks):
                queues.send_inputs(i, method="noop")
            for _ in range(args.tasks):
                queues.get_result(timeout=300)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        spy.send_signal(signal.SIGINT)
        spy.wait(120)
        counts: collections.Counter[str] = collections.Counter()
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            counts[classify(stack.split(";"))] += int(count)
    tasks = args.tasks * args.repeats
    cpu_per_task = cpu / tasks * 1e6
    sampled = sum(counts.values())
    gil_per_task = sampled / 250 / tasks * 1e6
    rows = [{"step": step, "samples": counts[step], "us_per_task": counts[step] / 250 / tasks * 1e6}
            for step in [*(s for s, _ in STEPS), OTHER]]
    rows.append({"step": "outside the interpreter (CPU time minus GIL-holding samples)", "samples": 0,
                 "us_per_task": max(cpu_per_task - gil_per_task, 0.0)})
    output = Path(args.output)
    write_csv(output / "steering_profile.csv", rows)
    lines = ["# Where the steering process's time goes, per task", "", *provenance(),
             f"- Versions: dragonhpc {version('dragonhpc')}, dragon-campaign {version('dragon-campaign')}, py-spy {version('py-spy')}",
             f"- Method: {args.repeats} x {args.tasks:,} no-op tasks submitted at once, then every result taken, {args.workers} workers; "
             "py-spy --gil at 250 Hz, non-blocking, each sample put in the first step found innermost out; microseconds per "
             "task = samples / 250 / tasks.", "",
             f"Throughput while sampled: {tasks / wall:,.0f} tasks/s; the steering process used {cpu / wall:.2f} cores, "
             f"{cpu_per_task:.0f} us of CPU per task, {gil_per_task:.0f} us of it holding the GIL.", "",
             "| Step | us per task |", "|---|---|"]
    lines += [f"| {row['step']} | {row['us_per_task']:.1f} |" for row in rows]
    lines.append("")
    (output / "steering_profile.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
