"""Execution on Dragon: the task server, worker pools and the worker loop."""

from dragon_campaign.server.pool import WorkerPool, WorkerSlot
from dragon_campaign.server.task_server import DragonTaskServer

__all__ = ["DragonTaskServer", "WorkerPool", "WorkerSlot"]
