"""Clean shutdown: after Ctrl-C (SIGINT) and after an agent fails, no worker survives and results are kept."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import tasks
from dragon.native.process import Process

from dragon_campaign import BaseThinker, DragonQueues, DragonTaskServer, RunDirectory, WorkerPool, agent, read_results
from dragon_campaign.apps import streaming
from dragon_campaign.campaign import CampaignFailed, run_campaign


def campaign_until_interrupted(run_dir: str) -> None:
    """Child process: a long streaming campaign; exits 130 when interrupted, as the launcher does."""
    config = streaming.Config(budget=100_000, task_sleep=0.05)
    try:
        streaming.run(config, {"cpu": WorkerPool(workers=2)}, RunDirectory(run_dir))
    except KeyboardInterrupt:
        os._exit(130)  # everything is shut down already; sys.exit would make Dragon print a traceback
    os._exit(0)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigint_stops_campaign_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    child = Process(target=campaign_until_interrupted, args=(str(run_dir),), env={"PYTHONPATH": os.pathsep.join(sys.path)})
    child.start()
    results_file = run_dir / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not results_file.exists() or len(results_file.read_text().splitlines()) < 5):
        time.sleep(0.1)
    assert results_file.exists(), "the campaign never produced results"
    child.send_signal(signal.SIGINT)
    assert child.join(timeout=60) == 130, "the interrupted campaign did not exit with 130"
    lines = results_file.read_text().splitlines()
    results = [json.loads(line) for line in lines]  # every line complete
    assert len(results) >= 5 and all(r["success"] for r in results[:5])
    worker_pids = {r["worker_info"]["pid"] for r in results if r["worker_info"]}
    assert worker_pids and not [pid for pid in worker_pids if process_exists(pid)], "workers outlived the campaign"


class BrokenThinker(BaseThinker):
    @agent
    def submit_then_fail(self) -> None:
        self.queues.send_inputs(1, method="noop")
        self.queues.get_result(timeout=30)
        raise RuntimeError("bad steering decision")


def test_failed_agent_stops_campaign_and_keeps_results(tmp_path):
    queues = DragonQueues()
    server = DragonTaskServer([tasks.noop], queues, pools={"cpu": WorkerPool(workers=1)}, run_dir=tmp_path / "run")
    with pytest.raises(CampaignFailed, match="bad steering decision"):
        run_campaign(BrokenThinker(queues), server)
    assert server.join(timeout=1) and server.worker_count() == 0
    assert [r.value for r in read_results(Path(tmp_path / "run" / "results.jsonl"))] == [1]


@pytest.mark.parametrize("method, stopped_by", [("sleep_then", "SIGTERM"), ("hang_ignoring_sigterm", "SIGKILL")])
def test_shutdown_with_a_worker_that_never_stops_is_bounded(run_dir, method, stopped_by, caplog):
    """The worker is still busy when the grace ends: SIGTERM stops a task at its next Python instruction;
    one that blocks SIGTERM is killed TERMINATE_S later. Either way shutdown ends in bounded time and the
    task comes back failed, not lost."""
    from dragon_campaign.server import dragon_workers

    queues = DragonQueues()
    server = DragonTaskServer([tasks.sleep_then, tasks.hang_ignoring_sigterm], queues, pools={"cpu": WorkerPool(workers=1)},
                              run_dir=run_dir, shutdown_grace=1.0).start()
    marker = run_dir.parent / "ignoring-sigterm"
    args = (None, 600) if method == "sleep_then" else (600, str(marker))
    queues.send_inputs(*args, method=method)
    deadline = time.monotonic() + 60
    while server.pool_status()["cpu"][0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    while method == "hang_ignoring_sigterm" and not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # inside the task
    began = time.monotonic()
    with caplog.at_level("WARNING", logger="dragon_campaign.server.dragon_workers"):
        assert server.stop(timeout=server.shutdown_limit), "shutdown did not end"
    took = time.monotonic() - began
    assert took < 1.0 + dragon_workers.TERMINATE_S + 10, f"shutdown took {took:.1f} s"
    assert f"sending {stopped_by}" in caplog.text
    assert ("sending SIGKILL" in caplog.text) == (stopped_by == "SIGKILL")
    result = queues.get_result(timeout=5)
    assert not result.success and "shut down while the task ran" in result.failure_info.exception


def test_hurry_cuts_the_grace_short(run_dir):
    """A second Ctrl-C (hurry) stops workers at once instead of after shutdown_grace."""
    queues = DragonQueues()
    server = DragonTaskServer([tasks.sleep_then], queues, pools={"cpu": WorkerPool(workers=1)}, run_dir=run_dir,
                              shutdown_grace=120.0).start()
    queues.send_inputs(None, 600, method="sleep_then")
    deadline = time.monotonic() + 60
    while server.pool_status()["cpu"][0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    began = time.monotonic()
    queues.send_kill_signal()
    server.hurry()
    assert server.join(60), "shutdown did not end"
    assert time.monotonic() - began < 30, "the 120 s grace was not cut short"
