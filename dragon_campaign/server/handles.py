"""The steering process's handles on Dragon worker processes: each worker's queues and the tasks it holds,
and the requests that may never be answered (a put into a stuck worker's full queue, a signal, a queue's
destruction), each made from a thread of its own or by a deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dragon.native.process import Process
from dragon.native.queue import Queue

from dragon_campaign.models import WorkerInformation
from dragon_campaign.queues.waiting import WaitingTask
from dragon_campaign.server.slot import WorkerSlot
from dragon_campaign.wire import WorkerKey

logger = logging.getLogger(__name__)

QUEUE_DESTROY_S = 10.0  # how long the queues' destruction may take at shutdown


@dataclass
class WorkerHandle:
    """The steering process's view of one worker process."""

    slot: WorkerSlot
    generation: int
    process: Process
    tasks: Queue
    control: Queue  # cancellations, read by the worker while a task runs long (or when rung)
    bell: str | None = None  # its doorbell, rung after each put (a worker of a crowded primary node, see crowded.py)
    cancel_bell: str | None = None  # its cancellations' doorbell, rung after each cancellation posted (same)
    relay: RelayHandle | None = None  # its node's relay (a relayed pool's worker off the steering process's node), which rings it
    inflight: dict[str, tuple[WaitingTask, float]] = field(default_factory=dict)
    queued_work: float = 0.0
    info: WorkerInformation | None = None

    @property
    def key(self) -> WorkerKey:
        """The worker's pool, slot and generation."""
        return WorkerKey(self.slot.pool, self.slot.index, self.generation)

    def release(self, task_id: str) -> WaitingTask:
        """Take a task off this worker (it finished, or was cancelled) and its estimate off the queued work."""
        task, estimate = self.inflight.pop(task_id)
        self.queued_work = max(0.0, self.queued_work - estimate) if self.inflight else 0.0
        return task

    def information(self) -> WorkerInformation:
        """Where the worker runs (what it said when ready, else what its slot says)."""
        return self.info or WorkerInformation(hostname=self.slot.hostname, pool=self.slot.pool, worker=self.slot.index, gpu=self.slot.gpu)


@dataclass
class RelayHandle:
    """The steering process's view of one node's relay (see ``.relay``)."""

    hostname: str
    process: Process
    inbox: Queue  # attachments and hand-offs, on the relay's node
    results: Queue  # the node's workers' messages and the monitor's notices of their exits, on the relay's node
    bell: str | None = None  # its doorbell, which the node's workers ring after each put (a crowded node, see crowded.py)
    lost: bool = False  # its process exited: its workers are told to stop, and their exits reported, directly

    @property
    def name(self) -> str:
        """How logs and the campaign's failure name it."""
        return f"the relay of node {self.hostname}"


def post(into: Queue, message: bytes, whom: object, timeout: float | None = None, then: Callable[[], None] | None = None) -> None:
    """Put a control message (stop, cancel) into a worker's queue from a thread of its own, and call ``then``
    once it is there: a put into the full queue of a worker that is stuck never returns, timeout or not
    (dragonhpc 0.15).
    """
    def put() -> None:
        try:
            into.put(message, timeout=timeout)
        except Exception:
            logger.debug(f"Could not send a control message to {whom}", exc_info=True)
            return
        if then is not None:
            then()
    threading.Thread(target=put, name=f"post-{whom}", daemon=True).start()


def signal_process(process: Process, ask: Callable[[Process], None], whom: object) -> None:
    """Terminate or kill a worker or a relay (``ask``: ``Process.terminate`` or ``Process.kill``; ``whom``: for the
    log); one already gone is fine.
    """
    try:
        ask(process)
    except Exception:
        logger.debug(f"{whom} was already gone", exc_info=True)


def destroy_queues(channels: list[Queue]) -> None:
    """Destroy Dragon queues, each in a thread of its own, all by one deadline (a destroy is a request to
    global services, which a loaded runtime may never answer).
    """

    def destroy(channel: Queue) -> None:
        try:
            channel.destroy()
        except Exception:
            logger.debug("A queue was already gone", exc_info=True)

    threads = [threading.Thread(target=destroy, args=(channel,), daemon=True) for channel in channels]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + QUEUE_DESTROY_S
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if stuck := sum(thread.is_alive() for thread in threads):
        logger.error(f"{stuck} Dragon queue(s) were not destroyed within {QUEUE_DESTROY_S:g} s; the runtime's teardown removes them")
