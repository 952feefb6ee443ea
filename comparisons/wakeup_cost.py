"""Wake-up cost: what waking a sleeping process or thread costs on this machine, the price of every hand-off.

    .venv/bin/python comparisons/wakeup_cost.py [--count 400]

Every task crosses three sleeps on a crowded node: the steering process rings the worker's doorbell, the
worker rings the result receiver's, and the receiver wakes the thinker's ``get_result``
(``dragon_campaign/server/crowded.py``). This measures each kind of wake-up with the runtime's own
doorbells and a ``threading.Condition``, against the same call when nobody sleeps:

* ring a sleeping worker: the time inside ``Ringer.ring`` when the doorbell's process sleeps in ``select``
  (the kernel wakes it before the call returns), rings 5 ms apart so that it is asleep each time;
* ring an awake one: the same call when a ring is already pending (no wake-up: the datagram is queued);
* notify a sleeping thread: ``Condition.notify`` plus the release of its lock, then how long until the
  woken thread runs.

Writes <output>/wakeup_cost.md and .csv. Inside a virtual machine a wake-up of an idle virtual CPU goes
through the hypervisor: run it on the nodes a campaign will use.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import provenance, write_csv, write_report

from dragon_campaign.server.crowded import Doorbell, Ringer, new_bell

SLEEPER = ("import sys\nfrom dragon_campaign.server.crowded import Doorbell\nbell = Doorbell(sys.argv[1])\nprint('ready', flush=True)\n"
           "while True:\n    bell.wait(1.0)\n")
SPACING_S = 0.005


def ring_costs(count: int, asleep: bool) -> list[float]:
    """Seconds inside ``ring`` for a doorbell held by another process, asleep or with a ring pending."""
    address = new_bell()
    if asleep:
        holder = subprocess.Popen([sys.executable, "-c", SLEEPER, address], stdout=subprocess.PIPE, text=True)
        held = None
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"  # its doorbell is bound
    else:
        holder, held = None, Doorbell(address)  # nobody waits on it: every ring after the first is queued
    ringer = Ringer()
    try:
        time.sleep(0.1)
        costs = []
        for _ in range(count):
            start = time.perf_counter()
            ringer.ring(address)
            costs.append(time.perf_counter() - start)
            if asleep:
                time.sleep(SPACING_S)
        return costs
    finally:
        ringer.close()
        if holder is not None:
            holder.kill()
            holder.wait()
        del held


def notify_costs(count: int) -> tuple[list[float], list[float]]:
    """Seconds inside notify + release, and from there until the woken thread runs."""
    condition = threading.Condition()
    woken: list[float] = []
    pending = [0]

    def waiter() -> None:
        with condition:
            for _ in range(count):
                while not pending[0]:
                    condition.wait()
                pending[0] -= 1
                woken.append(time.perf_counter())

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    inside, latency = [], []
    for index in range(count):
        time.sleep(SPACING_S)  # the waiter sleeps in wait()
        start = time.perf_counter()
        with condition:
            pending[0] += 1
            condition.notify()
        done = time.perf_counter()
        while len(woken) <= index:
            time.sleep(0)
        inside.append(done - start)
        latency.append(woken[index] - done)
    thread.join()
    return inside, latency


def summary(name: str, seconds: list[float]) -> dict[str, object]:
    cuts = statistics.quantiles(seconds, n=10)
    return {"what": name, "count": len(seconds), "median_us": statistics.median(seconds) * 1e6, "p90_us": cuts[8] * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=400, help="wake-ups of each kind (default 400)")
    parser.add_argument("--output", default="results", help="folder for the .md and .csv (default results/)")
    args = parser.parse_args()
    inside, latency = notify_costs(args.count)
    rows = [summary("ring a sleeping worker (time in the ring)", ring_costs(args.count, asleep=True)),
            summary("ring a doorbell with a ring pending (no wake-up)", ring_costs(args.count, asleep=False)),
            summary("notify a sleeping thread (time in notify + release)", inside),
            summary("notify a sleeping thread (until it runs)", latency)]
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    write_csv(output / "wakeup_cost.csv", rows)
    lines = ["# Wake-up cost: waking a sleeping process or thread", "", *provenance("python"),
             f"- Method: {args.count} of each, {SPACING_S * 1e3:g} ms apart so that the one woken sleeps each time; the "
             "runtime's own doorbells (abstract-namespace datagram sockets) and a threading.Condition.", "",
             "| Wake-up | Median (us) | p90 (us) |", "|---|---|---|"]
    lines += [f"| {row['what']} | {row['median_us']:.1f} | {row['p90_us']:.1f} |" for row in rows]
    lines += ["", "A task on a crowded node of the steering process crosses three such wake-ups (the worker's doorbell, "
              "the receiver's, the thinker's get_result): see docs/scaling.md#crowded-nodes."]
    print(write_report(output, "wakeup_cost", lines).read_text())


if __name__ == "__main__":
    main()
