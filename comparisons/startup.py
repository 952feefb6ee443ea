"""Start-up: from typing ``dragon campaign.py`` to the first result, split into the runtime's part and ours.

    PATH=$PWD/.venv/bin:$PATH python comparisons/startup.py [--repeats 3] [--output results]

Runs, ``--repeats`` times, a fresh ``dragon`` runtime around a minimal campaign (one worker, one no-op
task): this script must start outside any runtime, since each repeat starts its own. The campaign stamps
the wall clock at each step; the split is

* runtime start: from launching ``dragon`` to the campaign's first line (Dragon's launcher, global and
  local services, the interpreter);
* importing Dragon: ``import dragon`` in the campaign (Dragon's Python side, numpy among it);
* importing dragon_campaign: ``DragonQueues``, ``DragonTaskServer``, ``WorkerPool`` (ours);
* first worker: from starting the task server to its first worker being ready, split into Dragon's part,
  starting a process (measured on its own just before, in the same runtime: a bare process that reports
  its first line), and ours, the rest (the worker imports what it needs, unpickles its methods and says
  it is ready; the server's own start);
* first task: submitting the no-op and taking its result (ours);
* teardown: from the last result to the ``dragon`` command's exit (the server's shutdown and the runtime's).

Writes <output>/startup.md, .csv and .png (each run as a bar of its steps, dragon_campaign's hatched).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from common import outside_runtime_env, provenance, pyplot, write_csv, write_report

STEPS = ["runtime start", "importing Dragon", "importing dragon_campaign", "first worker: Dragon starts a process",
         "first worker: the rest", "first task", "teardown"]
OURS = ["importing dragon_campaign", "first worker: the rest", "first task"]


def noop(x: Any) -> Any:
    return x


def first_line(queue: Any) -> None:
    queue.put(time.time())


def probe(stamps_path: str) -> None:
    """The campaign, under the runtime: stamps each step into a JSON file."""
    stamps = {"first line": time.time()}
    import dragon  # noqa: F401

    stamps["dragon imported"] = time.time()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool

    stamps["dragon_campaign imported"] = time.time()
    from dragon.native.process import Process
    from dragon.native.queue import Queue

    reply = Queue()
    bare = Process(target=first_line, args=(reply,))
    started = time.time()
    bare.start()
    stamps["bare process start"] = reply.get(timeout=120) - started
    bare.join()
    queues = DragonQueues()
    with tempfile.TemporaryDirectory() as run_dir:
        stamps["server start"] = time.time()
        server = DragonTaskServer([noop], queues, pools={"cpu": WorkerPool(workers=1)}, run_dir=run_dir).start()
        while server.worker_count("cpu", ready=True) < 1:
            time.sleep(0.001)
        stamps["worker ready"] = time.time()
        queues.send_inputs(1, method="noop")
        queues.get_result(timeout=120)
        stamps["first result"] = time.time()
        server.stop()
    Path(stamps_path).write_text(json.dumps(stamps))


def measure_once() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        stamps_path = Path(folder) / "stamps.json"
        launched = time.time()
        completed = subprocess.run(["dragon", sys.executable, __file__, "--probe", str(stamps_path)], env=outside_runtime_env(),
                                   capture_output=True, text=True, timeout=300)
        ended = time.time()
        if completed.returncode != 0 or not stamps_path.exists():
            sys.exit(f"The campaign failed (exit {completed.returncode}):\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
        s = json.loads(stamps_path.read_text())
    bare = s["bare process start"]
    seconds = [s["first line"] - launched, s["dragon imported"] - s["first line"], s["dragon_campaign imported"] - s["dragon imported"],
               bare, s["worker ready"] - s["server start"] - bare, s["first result"] - s["worker ready"], ended - s["first result"]]
    return dict(zip(STEPS, seconds, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="results", help="folder for the .md and .csv (default results/)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: the campaign run under the runtime
    args = parser.parse_args()
    if args.probe:
        probe(args.probe)
        return
    if "DRAGON_MY_PUID" in os.environ:
        sys.exit("Run startup.py with plain python: it starts a Dragon runtime for each repeat")
    runs = []
    for repeat in range(args.repeats):
        runs.append(measure_once())
        print(f"repeat {repeat + 1}: " + ", ".join(f"{step} {seconds:.3f} s" for step, seconds in runs[-1].items()), flush=True)
    rows = [{"step": step, "median_s": statistics.median(run[step] for run in runs), "runs_s": [round(run[step], 3) for run in runs],
             "ours": step in OURS} for step in STEPS]
    output = Path(args.output)
    write_csv(output / "startup.csv", rows)
    to_first = sum(row["median_s"] for row in rows if row["step"] != "teardown")  # the bare process ran apart: not in it
    ours = sum(row["median_s"] for row in rows if row["ours"])
    lines = ["# Start-up: from launching `dragon` to the first result", "", *provenance("python"),
             f"- Versions: dragonhpc {version('dragonhpc')}, dragon-campaign {version('dragon-campaign')}",
             f"- Method: {args.repeats} fresh runtimes, each around a campaign of one worker and one no-op task; the campaign "
             "stamps the wall clock at each step (median of the repeats).", "",
             "| Step | Whose | Median (s) | Runs (s) |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['step']} | {'dragon_campaign' if row['ours'] else 'Dragon'} | {row['median_s']:.3f} | "
                     + ", ".join(f"{r:.3f}" for r in row["runs_s"]) + " |")
    lines += ["", f"Launch to first result: {to_first:.2f} s, of which dragon_campaign's part (import, first worker, first "
              f"task) {ours:.2f} s (target 0.5 s: {'met' if ours <= 0.5 else 'missed'}).",
              "", "Picture: `startup.png`, each run as a bar of its steps from the launch; dragon_campaign's steps hatched. "
              "\"The rest\" of the first worker is a difference of two measurements and can come out below zero by their "
              "noise; the picture draws that as zero."]
    print(write_report(output, "startup", lines, lambda path: plot(runs, path)).read_text())


def plot(runs: list[dict[str, float]], path: Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(11, 1.2 + 0.5 * len(runs)))
    colours = plt.get_cmap("tab10").colors
    for index, run in enumerate(runs):
        left = 0.0
        for number, step in enumerate(STEPS):
            width = max(run[step], 0.0)
            axis.barh(index, width, left=left, color=colours[number], hatch="//" if step in OURS else None,
                      edgecolor="black", linewidth=0.3, label=step if index == 0 else None)
            left += width
    axis.set_yticks(range(len(runs)), [f"run {index + 1}" for index in range(len(runs))])
    axis.invert_yaxis()
    axis.set_xlabel("seconds from launching dragon")
    axis.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.35 - 0.1 / len(runs)))
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
