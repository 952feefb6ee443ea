"""dragon_campaign: steer AI-in-the-loop computational campaigns on the Dragon runtime.

Colmena-compatible steering (``BaseThinker`` and its agent decorators, ``ResourceCounter``) over task queues
with priorities and cancellation (``DragonQueues``), executed by long-lived Dragon worker pools
(``DragonTaskServer``, ``WorkerPool``). Run a campaign with ``dragon-campaign run my_campaign.py``: a function
of it builds the thinker and the server from a ``RunContext`` (see ``docs/your-campaign.md``).

Names are imported on first use, so that processes which only read results, or Parsl workers running an
application's tasks, never import Dragon (importing ``dragon`` replaces parts of ``multiprocessing``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dragon_campaign.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "BaseThinker": "dragon_campaign.thinker",
    "ResourceCounter": "dragon_campaign.thinker",
    "Resumption": "dragon_campaign.thinker",
    "agent": "dragon_campaign.thinker",
    "event_responder": "dragon_campaign.thinker",
    "result_processor": "dragon_campaign.thinker",
    "task_submitter": "dragon_campaign.thinker",
    "DragonQueues": "dragon_campaign.queues",
    "DragonTaskServer": "dragon_campaign.server",
    "WorkerPool": "dragon_campaign.server",
    "ExecutorPool": "dragon_campaign.bridges",
    "ExecutableFailed": "dragon_campaign.executable",
    "ExecutableMethod": "dragon_campaign.executable",
    "MPIExecutableMethod": "dragon_campaign.executable",
    "MPIMethod": "dragon_campaign.mpi",
    "FailureInformation": "dragon_campaign.models",
    "ResourceRequirements": "dragon_campaign.models",
    "Result": "dragon_campaign.models",
    "WorkerInformation": "dragon_campaign.models",
    "ConfigError": "dragon_campaign.runs",
    "RunDirectory": "dragon_campaign.runs",
    "read_results": "dragon_campaign.runs",
    "resume_script": "dragon_campaign.journal.resume",
    "run_status": "dragon_campaign.journal.view",
    "KillSignalException": "dragon_campaign.exceptions",
    "TimeoutException": "dragon_campaign.exceptions",
    "WorkerLost": "dragon_campaign.exceptions",
    "run_campaign": "dragon_campaign.campaign",
    "Campaign": "dragon_campaign.campaign",
    "RunContext": "dragon_campaign.campaign",
    "Application": "dragon_campaign.apps",
    "CampaignFailed": "dragon_campaign.campaign",
    "CampaignSuspended": "dragon_campaign.campaign",
    "Checkpointer": "dragon_campaign.checkpoint",
    "ProxyStoreSettings": "dragon_campaign.bridges",
    "proxy_stores": "dragon_campaign.bridges",
    "ProgressReporter": "dragon_campaign.progress",
    "futures_status": "dragon_campaign.progress",
    "busy_fractions": "dragon_campaign.timeline",
    "idle_while_tasks_wait": "dragon_campaign.timeline",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time names resolve in __getattr__
    from dragon_campaign.apps import Application  # noqa: F401
    from dragon_campaign.bridges import ExecutorPool, ProxyStoreSettings, proxy_stores  # noqa: F401
    from dragon_campaign.campaign import Campaign, CampaignFailed, CampaignSuspended, RunContext, run_campaign  # noqa: F401
    from dragon_campaign.checkpoint import Checkpointer  # noqa: F401
    from dragon_campaign.exceptions import KillSignalException, TimeoutException, WorkerLost  # noqa: F401
    from dragon_campaign.executable import ExecutableFailed, ExecutableMethod, MPIExecutableMethod  # noqa: F401
    from dragon_campaign.journal.resume import resume_script  # noqa: F401
    from dragon_campaign.journal.view import run_status  # noqa: F401
    from dragon_campaign.models import FailureInformation, ResourceRequirements, Result, WorkerInformation  # noqa: F401
    from dragon_campaign.mpi import MPIMethod  # noqa: F401
    from dragon_campaign.progress import ProgressReporter, futures_status  # noqa: F401
    from dragon_campaign.queues import DragonQueues  # noqa: F401
    from dragon_campaign.runs import ConfigError, RunDirectory, read_results  # noqa: F401
    from dragon_campaign.server import DragonTaskServer, WorkerPool  # noqa: F401
    from dragon_campaign.thinker import (  # noqa: F401
        BaseThinker,
        ResourceCounter,
        Resumption,
        agent,
        event_responder,
        result_processor,
        task_submitter,
    )
    from dragon_campaign.timeline import busy_fractions, idle_while_tasks_wait  # noqa: F401


__getattr__ = lazy_exports(__name__, _EXPORTS)
