"""The link between the thinker and the task server: topics, priorities, cancellation."""

from dragon_campaign.queues.dragon import DragonQueues
from dragon_campaign.queues.waiting import WaitingTask, WaitingTasks

__all__ = ["DragonQueues", "WaitingTask", "WaitingTasks"]
