"""What travels between the steering process and the workers, as named records.

Every message is pickled with ``PICKLE_PROTOCOL`` (5: out-of-band buffers, and Dragon's queues carry the
bytes as they are). Nothing here imports Dragon: executors at other sites run tasks with these records too.

    steering --[list[TaskMessage]]--> worker task queue      (None: exit)
    steering --[list[str]]----------> worker control queue   (task ids to cancel)
    worker ----[Ready | StartFailed | Results | Partial]---> shared result queue <--[Exited | StopReceiver]-- monitor

A relayed worker (``WorkerPool(relayed=True)``, on a node other than the steering process's) is reached through
its node's relay (see ``dragon_campaign.server.relay``):

    steering --[Attach | list[Handoff]]--> relay inbox --> each worker's task queue       (None: the relay stops)
    worker ----[...]--> relay's result queue <--[Exited | StopReceiver]-- monitor
    relay -----[Relayed]--> shared result queue
"""

from __future__ import annotations

import pickle
from typing import Any, NamedTuple

PICKLE_PROTOCOL = 5


class Layout(NamedTuple):
    """What a task's resources ask for: nodes, processes per node (an MPI method's ranks), threads."""

    node_count: int = 1
    cpu_processes: int = 1
    cpu_threads: int = 1


class WorkerKey(NamedTuple):
    """A worker process: its pool, its slot in the pool, and how many times that slot was restarted."""

    pool: str
    worker: int
    generation: int


class TaskMessage(NamedTuple):
    """One task for a worker."""

    task_id: str
    method: str
    inputs: bytes  # pickled (args, kwargs)
    proxy_rule: Any  # None, or the topic's WorkerProxyRule (ProxyStore config, threshold, evict) for large values
    layout: Layout


class Failure(NamedTuple):
    """Why a task failed: the exception's repr and its formatted traceback."""

    exception: str
    traceback: str


class TaskRecord(NamedTuple):
    """What a worker reports of one finished task (times: wall clock, durations: seconds)."""

    task_id: str
    success: bool
    value: bytes | None  # the pickled value (a proxy's reference when the topic proxies it)
    failure: Failure | None
    input_received: float
    compute_started: float
    compute_ended: float
    deserialize_s: float
    running_s: float
    serialize_s: float
    mpi_ranks: int | None = None  # ranks that ran an MPI method
    proxy_times: dict[str, dict[str, dict]] | None = None  # resolve times of the input proxies (Result.time.proxy)


class Ready(NamedTuple):
    """A worker started and imported its methods."""

    key: WorkerKey
    info: dict[str, Any]  # WorkerInformation's fields


class StartFailed(NamedTuple):
    """A worker could not start (its methods did not unpickle, say)."""

    key: WorkerKey
    traceback: str


class Results(NamedTuple):
    """A batch of finished tasks."""

    key: WorkerKey
    sent: float
    records: list[TaskRecord]


class Partial(NamedTuple):
    """An item a streaming generator yielded while its task runs."""

    key: WorkerKey
    sent: float
    task_id: str
    item: bytes


class Exited(NamedTuple):
    """The monitor's notice that a worker process exited (behind every result the worker sent)."""

    key: WorkerKey
    exit_code: int | None


class StopReceiver(NamedTuple):
    """The shutdown's last message: the result receiver returns."""


class Attach(NamedTuple):
    """A relay's new worker: its task queue, which later hand-offs to ``key`` go to."""

    key: WorkerKey
    tasks: Any  # the worker's Dragon task queue
    bell: str | None  # its doorbell's address, rung after each put (a crowded node, see dragon_campaign.server.crowded)


class Handoff(NamedTuple):
    """What a relay puts on one worker's task queue: a pickled ``list[TaskMessage]`` (or ``None``), as it is."""

    key: WorkerKey
    payload: bytes


class Relayed(NamedTuple):
    """The messages of a node's workers (pickled, in the order the relay took them), forwarded as one."""

    messages: list[bytes]


WorkerMessage = Ready | StartFailed | Results | Partial | Exited | StopReceiver | Relayed


def dumps(message: Any) -> bytes:
    """Pickle a message with ``PICKLE_PROTOCOL``."""
    return pickle.dumps(message, protocol=PICKLE_PROTOCOL)


def loads(data: bytes) -> Any:
    """Unpickle a message."""
    return pickle.loads(data)
