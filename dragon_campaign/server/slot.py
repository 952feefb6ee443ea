"""Where one worker runs. Kept apart from ``.pool``, which needs pydantic: a worker unpickles its slot at
start, and importing pydantic would add 0.2 s to every worker's start.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dragon.infrastructure.policy import Policy

    from dragon_campaign.server.pool import WorkerPool

WORKER_ENV = "DRAGON_CAMPAIGN_WORKER"  # pool/index, in every worker's environment


@dataclass(frozen=True)
class WorkerSlot:
    """Where one worker of a pool runs: its node and, for a GPU worker, its GPU."""

    pool: str
    index: int
    hostname: str
    gpu: int | None = None

    def policy(self) -> Policy:
        """Dragon's placement of this worker: its node and, for a GPU worker, its GPU."""
        return on_node(self.hostname, self.gpu)

    def environment(self, pool: WorkerPool, gpu_env_var: str) -> dict[str, str]:
        """The worker's extra variables: its GPU, its name (``$WORKER_ENV``: for ``ps``, py-spy and fault
        injection to find it), and the steering process's import path (as spawn would).
        """
        env = dict(pool.env)
        env[gpu_env_var] = "" if self.gpu is None else str(self.gpu)  # CPU workers see no GPU at all
        env[WORKER_ENV] = f"{self.pool}/{self.index}"
        env["PYTHONPATH"] = import_path(env.get("PYTHONPATH", ""))
        return env


def on_node(hostname: str, gpu: int | None = None) -> Policy:
    """Dragon's placement of a process or a queue on this node (and a process on this GPU)."""
    from dragon.infrastructure.policy import Policy

    if gpu is None:
        return Policy(placement=Policy.Placement.HOST_NAME, host_name=hostname)
    return Policy(placement=Policy.Placement.HOST_NAME, host_name=hostname, gpu_affinity=[gpu])


def import_path(extra: str = "") -> str:
    """``PYTHONPATH`` for a process the steering process starts: ``extra``, then this process's import path."""
    paths = [p for p in (extra, *sys.path) if p and os.path.isdir(p)]
    return os.pathsep.join(dict.fromkeys(paths))
