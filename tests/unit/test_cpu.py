"""The wave workflow's CPU accounting reads /proc: a busy worker's seconds land in its group."""

from __future__ import annotations

import subprocess
import sys
import time

from dragon_campaign.apps.wave.cpu import GROUPS, CpuMeter


def test_a_busy_worker_counts_as_tasks_and_an_idle_one_costs_nothing():
    # a worker computes for a second, then waits (alive, as workers stay between tasks)
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 1.0\nwhile time.time() < end: pass\ntime.sleep(30)"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        meter = CpuMeter(task_pids={busy.pid}, service_pids={idle.pid})
        meter.start()
        time.sleep(1.5)
        spent = meter.stop()
    finally:
        for process in (busy, idle):
            process.kill()
            process.wait()
    assert set(spent) == set(GROUPS)
    assert 0.5 <= spent["tasks"] <= 1.5, spent
    assert spent["services"] < 0.2, spent
