"""Checkpoint and resume: a campaign stopped by SIGTERM (or --stop-after) carries on in the next job and
runs every task exactly once; the queues set unfinished tasks aside instead of failing them."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import tasks
from conftest import load_launcher, start_server
from dragon.native.process import Process

from dragon_campaign import BaseThinker, KillSignalException, ResourceCounter, Resumption, RunDirectory, agent, read_results
from dragon_campaign.campaign import CampaignSuspended, run_campaign
from dragon_campaign.checkpoint import Checkpointer, SavedCampaign

SMALL_MOLDESIGN = "app:\n  budget: 12\n  retrain_every: 4\n  ensemble: 2\n  epochs: 5\n  space_limit: 1500\n  chunk_size: 500\n"
# adiabatic IPs (the cation relaxed too) take several times longer: the stop lands midway however fast this machine is
SLOW_MOLDESIGN = SMALL_MOLDESIGN + "  adiabatic: true\n"


def launch(argv: list[str]) -> None:
    """Child process: the launcher, exiting with its status (os._exit: no Dragon traceback on the way out)."""
    os._exit(load_launcher().main(argv))


def simulations_logged(run_dir: Path) -> int:
    path = run_dir / "results.jsonl"
    return sum('"method":"simulate"' in line for line in path.read_text().splitlines()) if path.exists() else 0


def assert_each_simulation_once(run_dir: Path, budget: int) -> None:
    results = read_results(run_dir / "results.jsonl")
    simulated = [r for r in results if r.method == "simulate"]
    assert all(r.success for r in results), [r.failure_info for r in results if not r.success]
    assert len(simulated) == budget, f"{len(simulated)} simulations logged for a budget of {budget}"
    assert len({r.task_id for r in simulated}) == budget and len({r.args[0] for r in simulated}) == budget
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["simulations"], summary["failed"]) == (budget, 0)
    assert not (run_dir / "checkpoint").exists(), "the checkpoint is removed once the campaign finished"


def test_sigterm_midway_then_resume_runs_every_task_once(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(SLOW_MOLDESIGN)
    run_dir = tmp_path / "run"
    child = Process(target=launch, args=(["--config", str(config), "--run-dir", str(run_dir), "--workers", "2"],),
                    env={"PYTHONPATH": os.pathsep.join(sys.path)})
    child.start()
    deadline = time.monotonic() + 180
    while simulations_logged(run_dir) < 5 and time.monotonic() < deadline and child.returncode is None:
        time.sleep(0.1)
    assert simulations_logged(run_dir) >= 5, "the campaign never got going"
    child.send_signal(signal.SIGTERM)
    assert child.join(timeout=120) == 3, "a SIGTERM'd campaign checkpoints and exits with 3"

    described = json.loads((run_dir / "checkpoint" / "checkpoint.json").read_text())
    assert described["reason"] == "SIGTERM"
    assert sum(described["allocation"].values()) == 2 * 3, "2 workers x (1 running + queue_depth 2) slots"
    assert (run_dir / "checkpoint" / "store" / "manifest.json").exists()
    stored = json.loads((run_dir / "checkpoint" / "store" / "manifest.json").read_text())["entries"]
    assert {e["key"].rsplit("/", 1)[-1] for e in stored} >= {"chunk0", "chunk1", "chunk2"}, "the features are in the checkpoint"
    logged = read_results(run_dir / "results.jsonl")
    assert all(r.success for r in logged), "tasks cut short by the checkpoint are set aside, not logged as failed"
    before = {r.task_id for r in logged if r.method == "simulate"}
    assert 5 <= len(before) < 12

    assert load_launcher().main(["--resume", str(run_dir), "--progress-interval", "0"]) == 0
    assert_each_simulation_once(run_dir, 12)
    assert before < {r.task_id for r in read_results(run_dir / "results.jsonl") if r.method == "simulate"}
    log = (run_dir / "campaign.log").read_text()
    assert "Checkpoint written" in log and "Resumed from the checkpoint (SIGTERM)" in log


def test_stop_after_then_resume_with_the_batch_policy(tmp_path):
    config = tmp_path / "batch.yaml"
    config.write_text(SLOW_MOLDESIGN + "  policy: batch\n  batch_size: 4\n")
    run_dir = tmp_path / "run"
    launcher = load_launcher()
    assert launcher.main(["--config", str(config), "--run-dir", str(run_dir), "--workers", "2", "--stop-after", "4"]) == 3
    assert json.loads((run_dir / "checkpoint" / "checkpoint.json").read_text())["reason"] == "the 4 s time limit"
    assert launcher.main(["--resume", str(run_dir), "--stop-after", "600"]) == 0
    assert_each_simulation_once(run_dir, 12)
    assert launcher.main(["--resume", str(run_dir), "--dry-run"]) == 2, "a finished campaign has nothing to resume"


@pytest.mark.parametrize(("argv", "message"), [
    (["--app", "ackley", "--stop-after", "5"], "the ackley app cannot be checkpointed"),
    (["--resume", "{run}", "--config", "x.yaml"], "drop --config"),
    (["--resume", "{tmp}"], "no config.yaml there"),
    (["--resume", "{run}"], "nothing to resume from (no journal, no checkpoint)"),
    (["--run-dir", "{run}"], "holds the results of an earlier run"),
])
def test_resume_errors_are_clear(tmp_path, capsys, argv, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("app: {name: moldesign}\n")
    (run / "results.jsonl").write_text("")
    argv = [arg.format(run=run, tmp=tmp_path) for arg in argv]
    assert load_launcher().main([*argv, "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_suspended_server_sets_tasks_aside_and_the_next_server_runs_them_once(tmp_path):
    """Framework level: tasks waiting or running at the kill signal come back in the next job with their
    priorities; each task id is logged exactly once over both jobs."""
    first = RunDirectory(tmp_path / "run")
    queues, server = start_server([tasks.sleep_then], first.path, cpu=tasks_pool())
    ids = [queues.send_inputs(i, 0.3, method="sleep_then", priority=i) for i in range(8)]
    queues.get_result(timeout=60)
    queues.send_kill_signal(suspend=True)
    assert server.join(timeout=60)
    set_aside, untaken = queues.suspended()
    logged = read_results(first.results_path)
    assert all(r.success for r in logged)
    assert {t.task_id for t in set_aside} | {r.task_id for r in logged} == set(ids)
    assert not {t.task_id for t in set_aside} & {r.task_id for r in logged}
    assert {r.task_id for r in untaken} <= {r.task_id for r in logged}
    assert {t.priority for t in set_aside} == {float(ids.index(t.task_id)) for t in set_aside}
    with pytest.raises(KillSignalException):
        queues.get_result(timeout=5)  # nothing more will come in this job

    queues, server = start_server([tasks.sleep_then], first.path, cpu=tasks_pool())
    queues.resume(pickle.loads(pickle.dumps(set_aside)), untaken)
    resumed = [queues.get_result(timeout=60) for _ in range(len(set_aside) + len(untaken))]
    server.stop(timeout=60)
    assert {r.task_id for r in resumed} == {t.task_id for t in set_aside} | {r.task_id for r in untaken}
    assert Counter(r.task_id for r in read_results(first.results_path)) == Counter(ids), "each task logged once"


def tasks_pool():
    from dragon_campaign import WorkerPool

    return WorkerPool(workers=1)


class CountingThinker(BaseThinker):
    """Submits ``total`` sleeps one at a time; checkpoints how many it has received."""

    def __init__(self, queues, total: int) -> None:
        super().__init__(queues, ResourceCounter(1, ["sleep"]))
        self.total = total
        self.received: list[int] = []
        self.outstanding: list[str] = []

    @agent
    def loop(self) -> None:
        while len(self.received) + len(self.outstanding) < self.total or self.outstanding:
            if not self.outstanding:
                self.outstanding.append(self.queues.send_inputs(len(self.received), 0.2, method="sleep_then"))
            result = self.queues.get_result()
            self.outstanding.remove(result.task_id)
            self.received.append(result.value)

    def checkpoint_state(self) -> list[int]:
        return self.received

    def restore_state(self, resumption: Resumption) -> None:
        self.received = list(resumption.state)
        self.outstanding = [r.task_id for r in resumption.carried]


def test_run_campaign_checkpoints_at_its_time_limit_and_resumes(tmp_path):
    run_dir = RunDirectory(tmp_path / "run")
    queues, server = start_server([tasks.sleep_then], run_dir.path, cpu=tasks_pool())
    thinker = CountingThinker(queues, total=12)
    with pytest.raises(CampaignSuspended, match="time limit"):
        run_campaign(thinker, server, timeout=1.0, progress_interval=0, checkpointer=Checkpointer(run_dir))
    assert 0 < len(thinker.received) < 12
    saved: SavedCampaign = Checkpointer(run_dir).load()
    queues, server = start_server([tasks.sleep_then], run_dir.path, cpu=tasks_pool())
    thinker = CountingThinker(queues, total=12)
    run_campaign(thinker, server, progress_interval=0, checkpointer=Checkpointer(run_dir), resume_from=saved)
    assert sorted(thinker.received) == list(range(12))
    assert sorted(r.value for r in read_results(run_dir.results_path)) == list(range(12))
    assert not Checkpointer(run_dir).exists()


def test_results_logged_after_the_checkpoint_are_moved_aside(tmp_path):
    """A job that died without checkpointing (SIGKILL) logged results whose tasks run again on resume."""
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.results_path.write_text('{"a": 1}\n')
    checkpointer = Checkpointer(run_dir)
    checkpointer.save(SavedCampaign("test", [], [], None, None, run_dir.results_path.stat().st_size))
    with open(run_dir.results_path, "a") as fp:
        fp.write('{"b": 2}\n{"c": 3}\n')
    checkpointer.load()
    assert run_dir.results_path.read_text() == '{"a": 1}\n'
    (aside,) = run_dir.path.glob("results.after-checkpoint-*.jsonl")
    assert aside.read_text() == '{"b": 2}\n{"c": 3}\n'


def test_a_thinker_resumed_after_its_last_result_has_nothing_left_to_do():
    """A checkpoint taken between the last result and the end of the campaign must not leave the next job
    waiting for results that will never come."""
    from dragon_campaign import DragonQueues
    from dragon_campaign.apps import moldesign
    from dragon_campaign.apps.moldesign.thinker import InterleavedSearch

    config = moldesign.Config(budget=2, space_limit=50, seed=1)
    thinker = InterleavedSearch(DragonQueues(topics=["simulate"]), config, config.space(), 1, 1, "handle", "ns")
    done = [{"smiles": "C", "ip_ev": 15.0, "molecule": 3, "wall_s": 1.0, "compute_s": 1.0},
            {"smiles": "O", "ip_ev": 14.0, "molecule": 7, "wall_s": 2.0, "compute_s": 1.0}]
    state = {**thinker.checkpoint_state(), "results": done}
    thinker.restore_state(Resumption(state, [], {"simulate": 3, "ml": 0, "None": 0}))
    assert thinker.done.is_set() and thinker.submitted == {3, 7}
