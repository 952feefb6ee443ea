"""Tasks that wait for a worker, ordered by priority, with re-prioritization and cancellation.

One heap per method; a worker pool that serves several methods takes the best head among them. Changing a
priority pushes a fresh heap entry and leaves the old one behind to be skipped when it surfaces (lazy
deletion), so ``update_priority`` on k tasks costs O(k log n) whatever the queue length.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dragon_campaign.models import Result


@dataclass
class WaitingTask:
    """A task waiting for a worker: its result-to-be (which holds its topic, resources and timestamps) and
    its pickled inputs, which go to the worker as they are.
    """

    task_id: str
    method: str
    priority: float
    result: Result
    inputs: bytes = b""
    seq: int = field(default=0)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Tasks checkpointed by an earlier version held ``payload = (result, inputs)``."""
        if "payload" in state:
            state["result"], state["inputs"] = state.pop("payload")
        self.__dict__.update(state)


class WaitingTasks:
    """Priority queues of tasks per method; higher priority first, then first-come first-served.

    Not thread-safe on its own: the owner holds a lock around every call.
    """

    def __init__(self) -> None:
        self._heaps: dict[str, list[tuple[float, int, str]]] = {}
        self._tasks: dict[str, WaitingTask] = {}
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._tasks

    def __iter__(self) -> Iterator[WaitingTask]:
        """The waiting tasks, in no particular order."""
        return iter(self._tasks.values())

    def ids_of(self, methods: Iterable[str]) -> list[str]:
        """Ids of the waiting tasks of these methods."""
        wanted = set(methods)
        return [task.task_id for task in self._tasks.values() if task.method in wanted]

    def push(self, task: WaitingTask) -> None:
        """Add a task, behind the tasks of the same priority already waiting."""
        task.seq = next(self._counter)
        self._tasks[task.task_id] = task
        heapq.heappush(self._heaps.setdefault(task.method, []), (-task.priority, task.seq, task.task_id))

    def update_priority(self, task_ids: Iterable[str], priorities: Iterable[float]) -> list[str]:
        """Set new priorities; return the ids that were still waiting (the others already started or ended)."""
        updated = []
        for task_id, priority in zip(task_ids, priorities, strict=True):
            task = self._tasks.get(task_id)
            if task is None:
                continue
            task.priority = float(priority)
            heapq.heappush(self._heaps[task.method], (-task.priority, task.seq, task_id))
            updated.append(task_id)
        return updated

    def remove(self, task_ids: Iterable[str]) -> list[WaitingTask]:
        """Drop waiting tasks (cancellation); return the ones that were still waiting."""
        return [task for task in (self._tasks.pop(task_id, None) for task_id in task_ids) if task is not None]

    def drain(self) -> list[WaitingTask]:
        """Remove and return every waiting task (shutdown)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._heaps.clear()
        return tasks

    def peek(self, methods: Iterable[str]) -> WaitingTask | None:
        """The task that should run next among these methods, without removing it."""
        best: tuple[float, int, str] | None = None
        for method in methods:
            heap = self._heaps.get(method)
            head = self._valid_head(heap) if heap else None
            if head is not None and (best is None or head < best):
                best = head
        return None if best is None else self._tasks[best[2]]

    def pop(self, task_id: str) -> WaitingTask:
        """Remove the task ``peek`` returned."""
        task = self._tasks.pop(task_id)
        heapq.heappop(self._heaps[task.method])
        return task

    def _valid_head(self, heap: list[tuple[float, int, str]]) -> tuple[float, int, str] | None:
        """Discard stale entries (re-prioritized or cancelled tasks) until the head is current."""
        while heap:
            neg_priority, seq, task_id = heap[0]
            task = self._tasks.get(task_id)
            if task is not None and task.seq == seq and task.priority == -neg_priority:
                return heap[0]
            heapq.heappop(heap)
        return None
