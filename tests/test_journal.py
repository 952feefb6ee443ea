"""The campaign journal at the framework level: what it records, what a resume takes from it, what
``dragon-campaign status`` says, and a full disk under the run directory (a real tmpfs)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import tasks
from common import outside_runtime_env
from conftest import start_server

from dragon_campaign import WorkerPool, read_results
from dragon_campaign.journal.resume import carried_from
from dragon_campaign.journal.view import run_status

BIN = Path(sys.executable).parent


def journal(run_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(run_dir / "journal.sqlite")


def test_the_journal_records_submissions_priorities_cancellations_and_results(tmp_path):
    run_dir = tmp_path / "run"
    queues, server = start_server([tasks.sleep_then], run_dir, cpu=WorkerPool(workers=1))
    blocker = queues.send_inputs("first", 1.0, method="sleep_then")
    waiting = [queues.send_inputs(i, 0.0, method="sleep_then", priority=i) for i in range(4)]
    assert queues.update_priority(waiting[:2], [10.0, 20.0]) == waiting[:2]
    assert queues.cancel([waiting[3]]) == [waiting[3]]
    results = [queues.get_result(timeout=60) for _ in range(4)]
    assert [r.task_id for r in results] == [blocker, waiting[1], waiting[0], waiting[2]], "the new priorities decided the order"
    assert server.stop()
    db = journal(run_dir)
    states = dict(db.execute("SELECT task_id, state FROM tasks"))
    assert states == {blocker: "completed", **dict.fromkeys(waiting[:3], "completed"), waiting[3]: "cancelled"}
    priorities = dict(db.execute("SELECT task_id, priority FROM tasks"))
    assert (priorities[waiting[0]], priorities[waiting[1]], priorities[waiting[2]]) == (10.0, 20.0, 2.0)
    lines = [line for (line,) in db.execute("SELECT line FROM tasks WHERE done IS NOT NULL ORDER BY done")]
    assert lines == (run_dir / "results.jsonl").read_text().splitlines(), "results.jsonl is the journal's export, in its order"
    assert db.execute("SELECT outcome FROM sessions").fetchall() == [("ended",)]
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_thinker_without_state_is_answered_from_the_journal_by_method_and_inputs(tmp_path):
    run_dir = tmp_path / "run"
    queues, server = start_server([tasks.add], run_dir)
    first = {queues.send_inputs(i, 1, method="add"): i for i in range(6)}
    for _ in first:
        queues.get_result(timeout=60)
    assert server.stop()

    queues, server = start_server([tasks.add, (tasks.sleep_then, {"memoize": False})], run_dir)
    assert server.journal is not None
    carried = carried_from(run_dir, server.journal.session, from_snapshot=False, memoizable=server.memoizes)
    assert carried.finished == 6 and carried.snapshot is None
    queues.memoize(carried.memo)
    again = [queues.send_inputs(i, 1, method="add") for i in (0, 1, 2, 0)]  # the fourth 0 + 1 runs: each answer serves once
    new = queues.send_inputs(9, 1, method="add")
    results = {r.task_id: r for r in (queues.get_result(timeout=60) for _ in range(5))}
    answered = [results[task_id] for task_id in again[:3]]
    assert [r.value for r in answered] == [1, 2, 3]
    assert all(r.worker_info.answered_from in first for r in answered)
    assert getattr(results[again[3]].worker_info, "answered_from", None) is None and results[again[3]].value == 1
    assert results[new].value == 10
    assert server.stop()
    logged = read_results(run_dir / "results.jsonl")
    assert len(logged) == 6 + 2, "answered tasks are not logged again"
    assert {r.task_id for r in logged} >= {again[3], new}
    states = dict(journal(run_dir).execute("SELECT state, COUNT(*) FROM tasks GROUP BY state"))
    assert states == {"completed": 8, "answered": 3}


def test_a_kill_between_commit_and_export_loses_no_result(tmp_path):
    """A job killed after its journal committed results but before results.jsonl had them (and mid-line):
    the next job exports them, once."""
    run_dir = tmp_path / "run"
    queues, server = start_server([tasks.add], run_dir)
    for i in range(5):
        queues.send_inputs(i, 1, method="add")
    for _ in range(5):
        queues.get_result(timeout=60)
    assert server.stop()
    path = run_dir / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:17])  # what a kill in the middle of the export leaves
    _, server = start_server([tasks.add], run_dir)
    assert server.stop()
    assert path.read_text().splitlines(keepends=True) == lines


def test_status_tells_how_far_a_run_got_without_dragon(tmp_path):
    run_dir = tmp_path / "run"
    queues, server = start_server([tasks.add, tasks.fail], run_dir)
    queues.send_inputs(1, 2, method="add")
    queues.send_inputs("bad input", method="fail")
    for _ in range(2):
        queues.get_result(timeout=60)
    assert server.stop()
    completed = subprocess.run([str(BIN / "dragon-campaign"), "status", str(run_dir), "--json"], env=outside_runtime_env(),
                               capture_output=True, text=True, timeout=60)
    status = json.loads(completed.stdout)
    assert status["topics"]["default"]["finished"] == 2 and status["topics"]["default"]["failed"] == 1
    assert "bad input" in status["failures"][0]["reason"]
    assert status["state"] == "ended" and status["resumable"], "a job that ended without finishing its campaign resumes"
    assert completed.returncode == 3
    assert run_status(tmp_path).state == "no journal"


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a disk that fills up (needs root to mount; CI runs as root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


FILLING = '''"""Results of 40 KB each, 400 of them: 16 MB on a 4 MiB disk."""
import time

from dragon_campaign import BaseThinker, DragonQueues, DragonTaskServer, agent


def blob(i: int) -> str:
    time.sleep(0.02)  # several group commits before the disk is full
    return str(i) * 40_000


class Fill(BaseThinker):
    @agent
    def run_all(self) -> None:
        for i in range(400):
            self.queues.send_inputs(i, method="blob")
        for _ in range(400):
            self.queues.get_result()


def campaign(run):
    queues = DragonQueues()
    return Fill(queues), DragonTaskServer([blob], queues, pools=run.pools, run_dir=run.run_dir)
'''


def test_a_full_disk_stops_the_campaign_clearly_and_it_resumes_once_there_is_space(small_disk, tmp_path):
    campaign = tmp_path / "fill.py"
    campaign.write_text(FILLING)
    run_dir = small_disk / "run"
    command = [str(BIN / "dragon-campaign"), "run", str(campaign), "--workers", "2", "--run-dir", str(run_dir), "--progress-interval", "0"]
    full = subprocess.run(command, env=outside_runtime_env(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert full.returncode == 1, full.stderr[-3000:]
    reason = next((line for line in full.stderr.splitlines() if "cannot be written" in line), "")
    assert "journal.sqlite" in reason and ("disk is full" in reason or "No space left" in reason), full.stderr[-3000:]
    status = run_status(run_dir)
    assert status.resumable and status.state in ("failed", "killed"), status.text()  # with no space, even its end may not be written
    finished = status.topics["default"]["finished"]
    assert 0 < finished < 400, "the journal is readable and holds what was committed before the disk filled"

    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)  # space again: the run carries on elsewhere (a bigger disk)
    resumed = subprocess.run([str(BIN / "dragon-campaign"), "run", "--resume", str(moved), "--progress-interval", "0"],
                             env=outside_runtime_env(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    logged = read_results(moved / "results.jsonl")
    assert sorted(r.args[0] for r in logged) == list(range(400)), "every task once, those finished before the disk filled kept"
