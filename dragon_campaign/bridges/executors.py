"""A pool whose tasks run on a ``concurrent.futures.Executor``: Parsl, Globus Compute, or any other.

Bind methods to it like to a Dragon pool (``pools={"cpu": WorkerPool(), "remote": ExecutorPool(...)}``,
``(train, {"pool": "remote"})``); the thinker's code does not change. The task server keeps at most
``max_in_flight`` of its tasks submitted; the others wait in the priority queue, so ``update_priority``
and ``cancel`` still apply to them. Each task runs ``dragon_campaign.execution.run_remote`` on the
executor's worker, which needs ``dragon_campaign`` installed but not Dragon; large results follow the
topic's ProxyStore rule there as on Dragon workers.

Executors that fit (each is a ``concurrent.futures.Executor``):

* Parsl: ``parsl.concurrent.ParslPoolExecutor(config)`` with any Parsl ``Config`` (HTEX locally, or a
  ``PBSProProvider`` on Polaris);
* Globus Compute: ``globus_compute_sdk.Executor(endpoint_id=...)``. Its cloud service cannot be reached
  from this project's test machines, so the tests use a local executor through the same interface.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass


@dataclass(frozen=True, eq=False)
class ExecutorPool:
    """Tasks of this pool go to ``executor``; results record ``site`` as where they ran.

    Args:
        executor: Started by the caller before the task server, shut down by the caller after it.
        site: A name for where the executor runs (``worker_info.site`` of each result).
        max_in_flight: Tasks submitted to the executor and not yet finished.
    """

    executor: Executor
    site: str
    max_in_flight: int = 8

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {self.max_in_flight}")
        if not callable(getattr(self.executor, "submit", None)):
            raise TypeError(f"{type(self.executor).__name__} has no submit(): an ExecutorPool needs a concurrent.futures.Executor")
