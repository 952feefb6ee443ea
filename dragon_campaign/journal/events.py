"""What happens to tasks, in order, as the steering process sees it: the journal's input.

The queues and the task server record each event here as a record of plain values (an append: no I/O in
the thinker's threads); at every group commit the journal ships the buffer to its writer process.
Submissions, priority changes and cancellations are numbered under the queues' lock, so a snapshot of the
thinker (``Snapshot.seq``) cuts the stream at a point consistent with the tasks it knew.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

from dragon_campaign.models import Result

logger = logging.getLogger(__name__)
INPUTS_LIMIT = 2**20  # inputs above this many pickled bytes are not journaled: such a task cannot be requeued


class Submitted(NamedTuple):
    """A task entered the queues, with its pickled inputs as the workers get them."""

    seq: int
    task_id: str
    topic: str
    method: str
    priority: float
    digest: bytes | None  # of the inputs (``input_digest``): with the method, what memoization matches; None: the writer hashes them
    keep: bool  # the inputs stay in the result
    created: float
    info: bytes | None  # task_info, resources and max_retries where they are not the defaults (``requeue_info``)
    inputs: bytes | None  # None: above the journal's inputs_limit


class Reprioritized(NamedTuple):
    """Waiting tasks got new priorities."""

    seq: int
    task_ids: Sequence[str]
    priorities: Sequence[float]


class Cancelled(NamedTuple):
    """Tasks were withdrawn (they produce no result)."""

    seq: int
    task_ids: Sequence[str]


class Answered(NamedTuple):
    """A task was answered from the journal (memoized) instead of run: ``source`` is the task that ran."""

    seq: int
    task_id: str
    topic: str
    method: str
    priority: float
    digest: bytes
    keep: bool
    created: float
    source: str


class Completed(NamedTuple):
    """A task's last result arrived: ``line`` is its line of results.jsonl, ``value`` its value pickled where
    the line does not hold it exactly; ``final`` is False for a task the shutdown cut short and for a value
    that cannot answer a later task (never memoized).
    """

    task_id: str
    success: bool
    final: bool
    reason: str | None
    line: str
    value: bytes | None


class Snapshot(NamedTuple):
    """The thinker's state while it ran, and the tasks it was waiting for then (their results not yet taken)."""

    seq: int
    state: Any
    allocation: dict[str, int] | None
    in_flight: frozenset[str]


SHIPPED: tuple[type, ...] = (Submitted, Reprioritized, Cancelled, Answered, Completed)
Shipped = tuple[int, tuple[Any, ...]]  # an event as the buffer keeps it and the writer gets it: (index in SHIPPED, its fields)
Event = Shipped | Snapshot


class TaskEvents:
    """A buffer of events, recorded by the queues' and the server's threads, drained by the journal's shipper."""

    def __init__(self) -> None:
        self._events: deque[Event] = deque()
        self._seq = 0
        self.enabled = True  # off: nothing is kept (a server run without a journal)
        self.inputs_limit = INPUTS_LIMIT

    def next_seq(self) -> int:
        """The number of the next ordered event (call it under the queues' lock)."""
        self._seq += 1
        return self._seq

    @property
    def last_seq(self) -> int:
        """The number of the last ordered event."""
        return self._seq

    # Each kind of event is kept as (its index in SHIPPED, its fields as a plain tuple): these calls come once or
    # twice per task, and a plain tuple costs a tenth of a NamedTuple to make and to pickle for the writer.
    def submitted(self, task_id: str, topic: str, method: str, priority: float, digest: bytes | None, keep: bool, created: float,
                  info: bytes | None, inputs: bytes) -> None:
        """A task entered the queues (under their lock): see ``Submitted``."""
        if self.enabled:
            self._events.append((0, (self.next_seq(), task_id, topic, method, priority, digest, keep, created, info,
                                     inputs if len(inputs) <= self.inputs_limit else None)))

    def reprioritized(self, task_ids: Sequence[str], priorities: Sequence[float]) -> None:
        """Waiting tasks got new priorities (under the queues' lock)."""
        if self.enabled:
            self._events.append((1, (self.next_seq(), task_ids, priorities)))

    def cancelled(self, task_ids: Sequence[str]) -> None:
        """Tasks were withdrawn (under the queues' lock)."""
        if self.enabled:
            self._events.append((2, (self.next_seq(), task_ids)))

    def answered(self, task_id: str, topic: str, method: str, priority: float, digest: bytes, keep: bool, created: float,
                 source: str) -> None:
        """A task was answered from the journal (under the queues' lock): see ``Answered``."""
        if self.enabled:
            self._events.append((3, (self.next_seq(), task_id, topic, method, priority, digest, keep, created, source)))

    def completed(self, task_id: str, success: bool, final: bool, reason: str | None, line: str, value: bytes | None) -> None:
        """A task's last result arrived: see ``Completed``."""
        if self.enabled:
            self._events.append((4, (task_id, success, final, reason, line, value)))

    def add(self, snapshot: Snapshot) -> None:
        """Keep a snapshot of the thinker for the next commit."""
        if self.enabled:
            self._events.append(snapshot)

    def drain(self) -> list[Event]:
        """Every event kept so far, oldest first; they leave the buffer."""
        events = []
        try:
            while True:
                events.append(self._events.popleft())
        except IndexError:
            return events


def input_digest(inputs: bytes) -> bytes:
    """What identifies a task's inputs for memoization (with its method): 128 bits of BLAKE2b."""
    return hashlib.blake2b(inputs, digest_size=16).digest()


def requeue_info(result: Result) -> bytes | None:
    """The rest of what requeues a task, where it is not the default: task_info, resources, max_retries."""
    resources = result.resources
    shape = (resources.node_count, resources.cpu_processes, resources.cpu_threads)
    if not result.task_info and shape == (1, 1, 1) and not result.max_retries:
        return None
    return pickle.dumps((result.task_info, shape, result.max_retries), protocol=pickle.HIGHEST_PROTOCOL)


_EXACT_IN_JSON = (int, float, str, bool, type(None))  # values a result's JSON line holds exactly


def pickled_value(result: Result) -> tuple[bytes | None, bool]:
    """The pickled value (the rest of the result is its JSON line; None where the line holds it exactly), and
    whether it can answer a later task: not a proxy (its data may live in a store that ends with the job),
    and picklable.
    """
    value = result.value
    if type(value) in _EXACT_IN_JSON:
        return None, True
    if is_proxy(value):
        return None, False
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), True
    except Exception as exc:
        logger.warning(f"The value of task {result.task_id} cannot be journaled ({exc!r}); it runs again if the campaign resumes")
        return None, False


def is_proxy(value: Any) -> bool:
    """Whether a value is a ProxyStore proxy: its data may live in a store that ends with the job (never memoized)."""
    return type(value).__module__.startswith("proxystore.") and type(value).__name__ == "Proxy"
