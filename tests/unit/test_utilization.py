"""Each worker's busy fraction and its time idle while a task it could run waited, from results alone."""

from __future__ import annotations

import pytest

from dragon_campaign.models import Result, Timestamps, WorkerInformation
from dragon_campaign.timeline import busy_fractions, idle_while_tasks_wait


def task(worker: int, created: float, started: float, ended: float, method: str = "simulate") -> Result:
    stamps = Timestamps(created=created, dispatched=started, compute_started=started, compute_ended=ended, result_received=ended)
    return Result(method=method, success=True, timestamp=stamps, worker_info=WorkerInformation(pool="cpu", worker=worker, hostname="n1"))


def test_busy_and_idle_fractions_of_each_worker():
    # worker 0 computes from 0 to 10; worker 1 from 0 to 2, then idles while a task submitted at 2 waits until 8
    # (a dispatcher that kept it waiting): 6 of the campaign's 10 s
    results = [task(0, 0, 0, 10), task(1, 0, 0, 2), task(1, 2, 8, 10)]
    assert busy_fractions(results) == {"cpu #0 (n1)": 1.0, "cpu #1 (n1)": pytest.approx(0.4)}
    assert idle_while_tasks_wait(results) == {"cpu #0 (n1)": 0.0, "cpu #1 (n1)": pytest.approx(0.6)}
