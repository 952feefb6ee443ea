"""The steering: submit every sample point; every ``retrain_after`` completions (a round) refit a GPR and
reorder the tasks still waiting by its prediction (lowest predicted value first) and let the pools due
after that round join; stop after ``num_guesses`` completions, cancelling what is still waiting or running.

Pools join by round, not by reprioritization, so a run without reprioritization grows the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dragon_campaign import BaseThinker, DragonQueues, Result, agent
from dragon_campaign.apps.ackley.config import LOCAL, Config
from dragon_campaign.apps.ackley.gpr import fit_gpr


@dataclass
class Evaluation:
    """One completed task."""

    at_s: float  # seconds since the search started
    index: int  # of the sample point
    value: float  # NaN if the task failed
    pool: str | None


@dataclass
class Reprioritization:
    """One refit of the GPR and the reordering that followed."""

    at_s: float
    completions: int
    waiting: int  # tasks submitted, not completed, offered to update_priority
    reordered: int  # of those, the ones still waiting (not started) whose priority changed
    retrain_s: float  # fitting the GPR, locally or as a task (round trip included)
    predict_s: float
    update_s: float  # the update_priority call alone
    where: str
    updated_at: float  # wall clock (epoch seconds) when the new priorities took effect, as in task timestamps


class AckleySearch(BaseThinker):
    """One agent does it all, so every step happens in a clear order: consume, refit, reorder, grow."""

    def __init__(self, queues: DragonQueues, config: Config) -> None:
        super().__init__(queues)
        self.config = config
        self.points = config.sample_points()
        self.evaluations: list[Evaluation] = []
        self.reprioritizations: list[Reprioritization] = []
        self.worker_counts: list[tuple[float, int, int]] = []  # (seconds, completions, live workers)
        self.cancelled = 0
        self._start = time.monotonic()

    def _now(self) -> float:
        return time.monotonic() - self._start

    @agent
    def search(self) -> None:
        """Submit every point, then consume results round by round until ``num_guesses`` completed."""
        config = self.config
        self._start = time.monotonic()
        pending: dict[str, int] = {}
        for index, point in enumerate(self.points):
            task_id = self.queues.send_inputs(point.tolist(), config.runtime, config.runtime_var, config.seed * 1_000_003 + index,
                                              method="evaluate", topic=config.queue("evaluate"), task_info={"index": index})
            pending[task_id] = index
        self.logger.info(f"Submitted {len(pending)} points of {config.sample_dimensions} dimensions")
        self._note_workers()
        for result in self.queues.iterate_results(config.queue("evaluate")):  # as they complete
            self._record(result, pending)
            completions = len(self.evaluations)
            if completions >= config.num_guesses or self.done.is_set():
                break
            if completions % config.retrain_after == 0:
                self._end_round(completions // config.retrain_after, pending)
        withdrawn = self.queues.cancel(list(pending))
        self.cancelled = len(withdrawn)
        for task_id in withdrawn:
            del pending[task_id]
        self.logger.info(f"Stopping after {len(self.evaluations)} completions: cancelled {self.cancelled} waiting or running "
                         f"tasks, collecting the {len(pending)} that had finished or run at another site")
        while pending and not self.aborted.is_set():
            self._record(self.queues.get_result(config.queue("evaluate")), pending)
        self._note_workers()

    def _record(self, result: Result, pending: dict[str, int]) -> None:
        index = pending.pop(result.task_id)
        if not result.success:
            self.logger.warning(f"Point {index} failed: {result.failure_reason}")
        value = float(result.value) if result.success else float("nan")
        self.evaluations.append(Evaluation(self._now(), index, value, result.worker_info.pool if result.worker_info else None))
        if self.worker_counts[-1][2] != self.queues.worker_count():
            self._note_workers()

    def _note_workers(self) -> None:
        self.worker_counts.append((self._now(), len(self.evaluations), self.queues.worker_count()))

    def _fit(self) -> tuple[Any, float]:
        done = [e for e in self.evaluations if np.isfinite(e.value)]
        points = self.points[[e.index for e in done]].tolist()
        values = [e.value for e in done]
        start = time.perf_counter()
        if self.config.reprioritize_endpoint == LOCAL:
            model = fit_gpr(points, values, self.config.seed)
        else:
            self.queues.send_inputs(points, values, self.config.seed, method="fit_gpr", topic=self.config.queue("retrain"))
            result = self.queues.get_result(self.config.queue("retrain"))
            if not result.success:
                raise RuntimeError(f"Fitting the GPR on {self.config.reprioritize_endpoint!r} failed: {result.failure_reason}")
            model = result.value  # a ProxyStore proxy: resolved on first use below
        return model, time.perf_counter() - start

    def _end_round(self, round_number: int, pending: dict[str, int]) -> None:
        """Every ``retrain_after`` completions: reprioritize (when on), then let the pools due now join."""
        if self.config.reprioritize:
            self._reprioritize(pending)
        for pool in self.config.pools:
            if pool.join_after == round_number:
                methods = ["evaluate"] if pool.name in self.config.tasks["evaluate"] else []
                self.queues.add_pool(pool.name, pool.worker_pool(), methods)
                self._note_workers()

    def _reprioritize(self, pending: dict[str, int]) -> None:
        model, retrain_s = self._fit()
        task_ids = list(pending)
        start = time.perf_counter()
        predictions = model.predict(self.points[[pending[t] for t in task_ids]])
        predict_s = time.perf_counter() - start
        start = time.perf_counter()
        reordered = self.queues.update_priority(task_ids, (-predictions).tolist())  # lowest prediction runs first
        update_s = time.perf_counter() - start
        self.reprioritizations.append(Reprioritization(self._now(), len(self.evaluations), len(task_ids), len(reordered), retrain_s,
                                                       predict_s, update_s, self.config.reprioritize_endpoint, time.time()))
        self.logger.info(f"Reprioritization {len(self.reprioritizations)} after {len(self.evaluations)} completions: "
                         f"fit {retrain_s:.2f} s, {len(reordered)} waiting tasks reordered in {update_s * 1000:.1f} ms")

