"""The streaming optimizer campaign: thinker and entry point."""

from __future__ import annotations

import csv
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

from dragon_campaign import (
    BaseThinker,
    DragonQueues,
    DragonTaskServer,
    ResourceCounter,
    Result,
    Resumption,
    RunDirectory,
    WorkerPool,
    result_processor,
    run_campaign,
    task_submitter,
)
from dragon_campaign.apps.streaming.config import Config
from dragon_campaign.apps.streaming.tasks import rastrigin


class StreamingOptimizer(BaseThinker):
    """Keep every worker busy; each new point perturbs the best point seen so far."""

    rec: ResourceCounter  # always given one

    def __init__(self, queues: DragonQueues, slots: int, config: Config) -> None:
        super().__init__(queues, ResourceCounter(slots, ["evaluate"]))
        self.config = config
        self.random = random.Random(config.seed)
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.best: tuple[float, list[float]] | None = None
        self.trace: list[dict[str, Any]] = []  # one row per evaluation: progress.csv
        self.started = time.monotonic()
        self.recorded: set[str] = set()  # task ids of the results taken into account
        self._lock = threading.Lock()
        self.rec.reallocate(None, "evaluate", slots)

    def checkpoint_state(self) -> dict[str, Any]:
        """The search so far, for the journal's snapshots (taken while the agents run: copies, under the lock)."""
        with self._lock:
            return {"random": self.random.getstate(), "completed": self.completed, "failed": self.failed, "best": self.best,
                    "trace": list(self.trace), "recorded": set(self.recorded), "elapsed_s": time.monotonic() - self.started}

    def restore_state(self, resumption: Resumption) -> None:
        """Take the search back; the evaluations that carry on count as submitted and hold their slots."""
        saved = resumption.state
        self.random.setstate(saved["random"])
        self.completed, self.failed, self.best, self.trace = saved["completed"], saved["failed"], saved["best"], saved["trace"]
        self.recorded, self.started = saved["recorded"], time.monotonic() - saved["elapsed_s"]
        carried = {result.task_id for result in resumption.carried}
        self.submitted = len(self.recorded) + len(carried - self.recorded)
        if resumption.allocation is not None:
            self.rec.restore(resumption.allocation, in_use={"evaluate": len(carried)})

    def propose(self) -> list[float]:
        """A new point: random before the first result, else the best point perturbed."""
        with self._lock:
            best = self.best
        if best is None:
            return [self.random.uniform(-self.config.bound, self.config.bound) for _ in range(self.config.dimensions)]
        return [xi + self.random.gauss(0, self.config.step) for xi in best[1]]

    @task_submitter(task_type="evaluate")
    def submit(self) -> None:
        """Each free slot: evaluate a new point, until the budget is submitted."""
        if self.submitted >= self.config.budget:
            self.done.set()
            return
        self.submitted += 1
        self.queues.send_inputs(self.propose(), method="rastrigin", input_kwargs={"sleep": self.config.task_sleep})

    @result_processor(topic="default")
    def receive(self, result: Result) -> None:
        """Each result: free its slot and keep the best point."""
        self.rec.release("evaluate", 1)
        with self._lock:
            if result.task_id in self.recorded:
                return  # delivered again after a resume from a snapshot that had it already
            self.recorded.add(result.task_id)
            if not result.success:
                self.failed += 1
                self.logger.warning(f"Evaluation failed: {result.failure_reason}")
                return
            self.completed += 1
            point = list(result.args[0])
            if self.best is None or result.value < self.best[0]:
                self.best = (result.value, point)
                self.logger.info(f"[{self.completed}/{self.config.budget}] new best {result.value:.4f}")
            self.trace.append({"completed": self.completed, "at_s": time.monotonic() - self.started, "value": result.value,
                               "best_value": self.best[0]})


def run(config: Config, pools: dict[str, WorkerPool], run_dir: RunDirectory, resume: bool = False) -> dict[str, Any]:
    """Run the campaign and write ``summary.json`` and ``progress.csv`` (the best value after each evaluation).

    Args:
        resume: Carry on from the journal of ``run_dir`` (whatever ended the earlier job).
    """
    queues = DragonQueues()
    server = DragonTaskServer([rastrigin], queues, pools=pools, run_dir=run_dir).start()
    thinker = StreamingOptimizer(queues, server.worker_count(), config)
    run_campaign(thinker, server, resume=resume)
    summary = {
        "app": "streaming",
        "evaluations": thinker.completed,
        "failed": thinker.failed,
        "best_value": None if thinker.best is None else thinker.best[0],
        "best_point": None if thinker.best is None else thinker.best[1],
        "results": str(run_dir.results_path),
    }
    Path(run_dir.path, "summary.json").write_text(json.dumps(summary, indent=2))
    with open(run_dir.path / "progress.csv", "w", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=["completed", "at_s", "value", "best_value"])
        writer.writeheader()
        writer.writerows(thinker.trace)
    return summary
