"""What happens to tasks, in order, as the steering process sees it: the journal's input.

The queues and the task server record each event here with a tuple append (no I/O, no pickling in the
thinker's threads); the journal's writer thread drains the buffer at every group commit. Submissions,
priority changes and cancellations are numbered under the queues' lock, so a snapshot of the thinker
(``Snapshot.seq``) cuts the stream at a point consistent with the tasks it knew.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

from dragon_campaign.models import Result


class Submitted(NamedTuple):
    """A task entered the queues: its result-to-be and its pickled inputs (as the workers get them)."""

    seq: int
    result: Result
    inputs: bytes
    digest: bytes  # of the method and the inputs: what memoization matches


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
    result: Result
    digest: bytes
    source: str


class Completed(NamedTuple):
    """A task's last result arrived; ``line`` is its line of results.jsonl; ``final`` is False for a task the
    shutdown cut short (it failed only because the campaign stopped: never memoized).
    """

    result: Result
    line: str
    final: bool


class Snapshot(NamedTuple):
    """The thinker's state while it ran, and the tasks it was waiting for then (their results not yet taken)."""

    seq: int
    state: Any
    allocation: dict[str, int] | None
    in_flight: frozenset[str]


Event = Submitted | Reprioritized | Cancelled | Answered | Completed | Snapshot


class TaskEvents:
    """A buffer of events; ``add`` is called by many threads, ``drain`` by the journal's writer."""

    def __init__(self) -> None:
        self._events: deque[Event] = deque()
        self._seq = 0
        self.enabled = True  # off: nothing is kept (a server run without a journal)

    def next_seq(self) -> int:
        """The number of the next ordered event (call it under the queues' lock)."""
        self._seq += 1
        return self._seq

    @property
    def last_seq(self) -> int:
        """The number of the last ordered event."""
        return self._seq

    def add(self, event: Event) -> None:
        """Keep an event for the next commit."""
        if self.enabled:
            self._events.append(event)

    def drain(self) -> list[Event]:
        """Every event kept so far, oldest first; they leave the buffer."""
        events = []
        try:
            while True:
                events.append(self._events.popleft())
        except IndexError:
            return events

    def put_back(self, events: list[Event]) -> None:
        """Events a failed commit could not write: first in line for the next one."""
        self._events.extendleft(reversed(events))
