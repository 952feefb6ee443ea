"""The Ackley campaign's configuration, in the spirit of the original EMEWS YAML file.

Every key of the search itself is required, so that a file that forgot one fails before any work starts
(the launcher reports the file and the key); pools declare when they join the run.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from dragon_campaign import WorkerPool
from dragon_campaign.apps.ackley.function import DOMAIN

LOCAL = "local"
TaskType = Literal["evaluate"]
QueueName = Literal["evaluate", "retrain"]


def _queue_names() -> dict[QueueName, str]:
    return {"evaluate": "evaluate", "retrain": "retrain"}


class PoolSpec(BaseModel):
    """One worker pool of the campaign."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Pool name, used by tasks and reprioritize_endpoint")
    type: Literal["cpu", "gpu"] = Field("cpu", description="cpu: workers spread over the nodes; gpu: one per GPU (CPU workers where there is none)")
    workers: PositiveInt = Field(description="Number of workers (for gpu: at most this many)")
    join_after: NonNegativeInt = Field(0, description="Joins after this many rounds of retrain_after completions, i.e. after that reprioritization (0: from the start)")

    def worker_pool(self) -> WorkerPool:
        """The pool the task server starts (sleep-bound tasks: workers need not match cores)."""
        if self.type == "gpu":
            return WorkerPool(workers=self.workers, gpus=True, cpu_fallback_workers=self.workers)
        return WorkerPool(workers=self.workers)


class Config(BaseModel):
    """Parameters of the GPR-steered Ackley search (the ``app:`` section)."""

    model_config = ConfigDict(extra="forbid")

    pools: list[PoolSpec] = Field(description="Worker pools; those with join_after > 0 join mid-run")
    tasks: dict[TaskType, list[str]] = Field(description="Which pools serve each task type (evaluate)")
    task_queues: dict[QueueName, str] = Field(default_factory=lambda: _queue_names(), description="Queue (topic) of each task type")
    reprioritize_endpoint: str = Field(LOCAL, description="Where the GPR is fitted: 'local' (in the thinker) or a pool name (as a task; the fitted GPR comes back as a ProxyStore proxy)")
    reprioritize: bool = Field(True, description="Reorder waiting tasks by the GPR's prediction (False: run in submission order)")
    search_space_size: PositiveInt = Field(description="Number of sample points submitted (750 in the original)")
    sample_dimensions: PositiveInt = Field(description="Dimensions of the Ackley function (4 in the original)")
    runtime: PositiveFloat = Field(description="Mean emulated run time of a task, seconds")
    runtime_var: NonNegativeFloat = Field(description="Variance of the emulated run time (lognormal), seconds squared")
    num_guesses: PositiveInt = Field(description="Stop after this many completed tasks and cancel the rest")
    retrain_after: int = Field(ge=2, description="Refit the GPR and reprioritize after every this many completions")
    seed: int = Field(0, description="Seed of the sample points and of the run times")

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        names = [pool.name for pool in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pool names must be unique, got {names}")
        if "evaluate" not in self.tasks or not self.tasks["evaluate"]:
            raise ValueError("tasks.evaluate must name at least one pool")
        unknown = sorted(set(self.tasks["evaluate"]) - set(names))
        if unknown:
            raise ValueError(f"tasks.evaluate names unknown pool(s) {unknown}; the pools are {names}")
        if not any(pool.join_after == 0 and pool.name in self.tasks["evaluate"] for pool in self.pools):
            raise ValueError("tasks.evaluate must name a pool that starts with the run (join_after 0)")
        if self.reprioritize_endpoint != LOCAL:
            endpoint = next((pool for pool in self.pools if pool.name == self.reprioritize_endpoint), None)
            if endpoint is None:
                raise ValueError(f"reprioritize_endpoint {self.reprioritize_endpoint!r} is neither 'local' nor a pool ({names})")
            if endpoint.join_after:
                raise ValueError(f"the reprioritize_endpoint pool {endpoint.name!r} must start with the run (join_after 0)")
        if self.queue("evaluate") == self.queue("retrain"):
            raise ValueError(f"task_queues must name a different queue per task type, got {self.task_queues}")
        if self.num_guesses > self.search_space_size:
            raise ValueError(f"num_guesses ({self.num_guesses}) exceeds search_space_size ({self.search_space_size})")
        return self

    def queue(self, task_type: Literal["evaluate", "retrain"]) -> str:
        """The topic that carries tasks of this type."""
        return self.task_queues.get(task_type, task_type)

    def sample_points(self) -> np.ndarray:
        """The search space: ``search_space_size`` points drawn uniformly from Ackley's domain."""
        rng = np.random.default_rng(self.seed)
        return rng.uniform(-DOMAIN, DOMAIN, size=(self.search_space_size, self.sample_dimensions))


def default_pools(config: Config) -> dict[str, WorkerPool]:
    """The pools that start with the run; the others join after their round."""
    return {pool.name: pool.worker_pool() for pool in config.pools if pool.join_after == 0}
