"""What a pool backend offers the task server, and what the server offers it back.

The server (``task_server``) owns the waiting tasks' order, the results and the shutdown order; a backend
owns one kind of pool: ``dragon_workers`` (long-lived Dragon processes) or ``executor_pools``
(``concurrent.futures`` executors at other sites). The server calls a backend under its lock to take
the tasks its pools can start now; the backend runs them and completes each through ``Completion``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from dragon_campaign.models import FailureInformation, Result, WorkerInformation, fill
from dragon_campaign.queues.waiting import WaitingTask, WaitingTasks
from dragon_campaign.wire import Layout, TaskRecord

if TYPE_CHECKING:
    from dragon_campaign.queues.dragon import DragonQueues

Send = Callable[[], None]  # what a backend does once the locks are released (queue puts, executor submits)


class Completion(Protocol):
    """The task server, as its backends see it."""

    lock: threading.RLock  # guards the backends' bookkeeping together with the server's
    queues: DragonQueues

    @property
    def stopping(self) -> bool:
        """Whether the shutdown began (nothing new is dispatched)."""

    def estimate(self, method: str) -> float | None:
        """The method's running-average duration in seconds (None before its first result)."""

    def function(self, method: str) -> Callable[..., Any]:
        """The registered function of a method."""

    def result_rule(self, task: WaitingTask) -> Any:
        """What a worker does with a large value of this task's topic (None, or a ProxyStore rule)."""

    def complete(self, task: WaitingTask, record: TaskRecord, info: WorkerInformation, sent: float, received: float) -> Result:
        """Fill the task's result from its record (under ``lock``)."""

    def may_retry(self, task: WaitingTask) -> bool:
        """Whether the failed task runs again (counts the retry; under ``lock``)."""

    def finish(self, results: list[Result], final: bool = True) -> None:
        """Log the results and hand them to the thinker (outside ``lock``; ``final``: the tasks' own outcomes)."""

    def dispatch(self) -> None:
        """Hand waiting tasks to pools with room (outside ``lock``)."""

    def pool_broken(self, pool: str, reason: str) -> None:
        """No worker of this pool can start: fail the tasks nothing else can run (outside ``lock``)."""

    def stop_campaign(self, reason: str) -> None:
        """A process the campaign cannot go on without died: stop it and say why."""

    def end_unfinished(self, tasks: list[WaitingTask], failure: Callable[[WaitingTask], FailureInformation]) -> None:
        """Tasks the shutdown cut short: set aside for the checkpoint when suspending, else reported failed."""


class Backend(Protocol):
    """One kind of pool."""

    def accepts(self, pool: object) -> bool:
        """Whether this backend runs this kind of pool."""

    def start(self, pools: dict[str, Any], serving: dict[str, list[str]]) -> None:
        """Start these pools (name -> pool; serving: name -> its methods)."""

    def add_pool(self, name: str, pool: Any, methods: list[str]) -> int:
        """Start a pool while the campaign runs; returns how many workers it starts."""

    def take(self, waiting: WaitingTasks, idle_only: bool) -> Send | None:
        """Under the queues' and the server's locks: take the tasks this backend's pools can start now out of
        ``waiting``; returns the sending to do once the locks are released.
        """

    def may_take_now(self) -> bool:
        """Whether a pool may have room for a task at once (a worker with nothing to do), looked at without the
        locks: a thinker's submission dispatches only then. It may say yes wrongly; it says no only where whoever
        makes room next (a result, a cancellation, a new worker) dispatches after it.
        """

    def cancel(self, task_ids: Iterable[str]) -> list[WaitingTask]:
        """Stop these tasks where they run, under the server's lock; returns those stopped."""

    def status(self) -> dict[str, tuple[int, int]]:
        """Per pool: (busy, size)."""

    def worker_count(self, pool: str | None = None) -> int:
        """Live workers, of one pool or of all."""

    def stop(self, grace_ends: float, hurry: threading.Event) -> None:
        """Stop running tasks by ``grace_ends`` (at once once ``hurry`` is set); tasks cut short are completed
        through ``Completion`` (failed, or set aside when the campaign is checkpointed).
        """

    def close(self) -> None:
        """Release what the backend holds (threads, queues), by a deadline."""


def failed(task: WaitingTask, failure: FailureInformation) -> Result:
    """The task's result, marked failed with ``failure`` (the task did not complete)."""
    task.result.success = False
    task.result.failure_info = failure
    return task.result


def mark_dispatched(task: WaitingTask) -> None:
    """Record on the task's result that it left the waiting queue now, at its current priority."""
    fill(task.result, priority=task.priority)
    fill(task.result.timestamp, dispatched=time.time())


def layout_of(task: WaitingTask) -> Layout:
    """What the task's resources ask for: nodes, processes per node (the ranks of an MPI method), threads."""
    resources = task.result.resources
    return Layout(resources.node_count, resources.cpu_processes, resources.cpu_threads)
