"""Live progress while a campaign runs, and the worker-utilization timeline after it."""

from __future__ import annotations

import csv
import logging
import time

import tasks

from dragon_campaign import BaseThinker, DragonQueues, DragonTaskServer, WorkerPool, agent, read_results
from dragon_campaign.campaign import run_campaign
from dragon_campaign.progress import ProgressReporter
from dragon_campaign.timeline import write_utilization


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def test_status_counts_tasks_per_topic_and_busy_workers(serve):
    queues, server = serve([tasks.sleep_then, tasks.noop], topics=("slow", "quick"), cpu=WorkerPool(workers=1))
    slow = [queues.send_inputs(i, 0.5, method="sleep_then", topic="slow") for i in range(4)]
    queues.get_result("slow", timeout=30)
    wait_for(lambda: queues.topic_status()["slow"].running == 1)
    assert queues.cancel(slow[-1:]) == slow[-1:]
    status = queues.topic_status()
    assert (status["slow"].waiting, status["slow"].running, status["slow"].finished) == (1, 1, 1)
    assert status["quick"] == type(status["quick"])(0, 0, 0)
    assert server.pool_status() == {"cpu": (1, 1)}
    line = ProgressReporter(server, interval=0).line()
    assert "slow 1 waiting, 1 running, 1 finished" in line and "quick" not in line and "workers busy: cpu 1/1" in line
    for _ in range(2):
        queues.get_result("slow", timeout=30)
    assert queues.topic_status()["slow"] == type(status["slow"])(0, 0, 3)


class SleepyThinker(BaseThinker):
    @agent
    def work(self) -> None:
        for i in range(6):
            self.queues.send_inputs(i, 0.3, method="sleep_then", topic="slow")
        for _ in range(6):
            self.queues.get_result("slow")


def test_campaign_logs_progress_and_draws_who_ran_what(run_dir, caplog):
    caplog.set_level(logging.INFO, logger="dragon_campaign.progress")
    queues = DragonQueues(topics=["slow"])
    server = DragonTaskServer([tasks.sleep_then], queues, pools={"cpu": WorkerPool(workers=2)}, run_dir=run_dir)
    run_campaign(SleepyThinker(queues), server, progress_interval=0.2)
    lines = [m for m in caplog.messages if m.startswith("progress: ")]
    assert lines and any("running" in m and "workers busy: cpu" in m and "results/s" in m for m in lines)
    picture = write_utilization(run_dir / "results.jsonl", run_dir)
    assert picture == run_dir / "utilization.png" and picture.stat().st_size > 1000
    rows = list(csv.DictReader(open(run_dir / "utilization.csv")))
    assert [(row["pool"], row["method"]) for row in rows] == [("cpu", "sleep_then")]
    assert float(rows[0]["compute_s"]) >= 6 * 0.3
    assert len({r.worker_info.worker for r in read_results(run_dir / "results.jsonl")}) == 2  # two rows in the picture
