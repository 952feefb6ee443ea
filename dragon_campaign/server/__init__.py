"""Execution on Dragon: the task server, worker pools and the worker loop."""

from typing import TYPE_CHECKING

from dragon_campaign.lazy import lazy_exports

_EXPORTS = {"DragonTaskServer": "dragon_campaign.server.task_server", "WorkerPool": "dragon_campaign.server.pool",
            "WorkerSlot": "dragon_campaign.server.pool"}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from dragon_campaign.server.pool import WorkerPool, WorkerSlot  # noqa: F401
    from dragon_campaign.server.task_server import DragonTaskServer  # noqa: F401

__getattr__ = lazy_exports(__name__, _EXPORTS)
