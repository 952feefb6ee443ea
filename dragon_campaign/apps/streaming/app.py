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
        self._lock = threading.Lock()
        self.rec.reallocate(None, "evaluate", slots)

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


def run(config: Config, pools: dict[str, WorkerPool], run_dir: RunDirectory) -> dict[str, Any]:
    """Run the campaign and write ``summary.json`` and ``progress.csv`` (the best value after each evaluation)."""
    queues = DragonQueues()
    server = DragonTaskServer([rastrigin], queues, pools=pools, run_dir=run_dir).start()
    thinker = StreamingOptimizer(queues, server.worker_count(), config)
    run_campaign(thinker, server)
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
