"""dragon_campaign: steer AI-in-the-loop computational campaigns on the Dragon runtime.

Colmena-compatible steering (``BaseThinker`` and its agent decorators, ``ResourceCounter``) over task queues
with priorities and cancellation (``DragonQueues``), executed by long-lived Dragon worker pools
(``DragonTaskServer``, ``WorkerPool``). Run programs that use it under the runtime: ``dragon script.py``.
"""

from dragon_campaign.exceptions import KillSignalException, TimeoutException, WorkerLost
from dragon_campaign.models import FailureInformation, ResourceRequirements, Result, WorkerInformation
from dragon_campaign.queues import DragonQueues
from dragon_campaign.runs import ConfigError, RunDirectory, read_results
from dragon_campaign.server import DragonTaskServer, WorkerPool
from dragon_campaign.thinker import BaseThinker, ResourceCounter, agent, event_responder, result_processor, task_submitter

__version__ = "0.1.0"

__all__ = [
    "BaseThinker",
    "ConfigError",
    "DragonQueues",
    "DragonTaskServer",
    "FailureInformation",
    "KillSignalException",
    "ResourceCounter",
    "ResourceRequirements",
    "Result",
    "RunDirectory",
    "TimeoutException",
    "WorkerInformation",
    "WorkerLost",
    "WorkerPool",
    "agent",
    "event_responder",
    "read_results",
    "result_processor",
    "task_submitter",
]
