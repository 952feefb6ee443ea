"""The link between the thinker and the task server: topics, priorities, cancellation."""

from typing import TYPE_CHECKING

from dragon_campaign.lazy import lazy_exports

_EXPORTS = {"DragonQueues": "dragon_campaign.queues.dragon", "WaitingTask": "dragon_campaign.queues.waiting",
            "WaitingTasks": "dragon_campaign.queues.waiting"}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from dragon_campaign.queues.dragon import DragonQueues  # noqa: F401
    from dragon_campaign.queues.waiting import WaitingTask, WaitingTasks  # noqa: F401

__getattr__ = lazy_exports(__name__, _EXPORTS)
