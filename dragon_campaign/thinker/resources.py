"""ResourceCounter: slots allocated to task types, and the thread that moves them while an event lasts.

Same semantics as Colmena 0.7's ``colmena.thinker.resources``: slots start unallocated (task type ``None``);
``reallocate`` moves them between task types once they are free; ``acquire``/``release`` track use within a
task type; requests of one task type are served first-come, first-served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

_POLL_S = 0.05  # how often blocked calls look at their cancel event


class ResourceCounter:
    """Thread-safe count of the slots allocated to, and available for, each task type."""

    def __init__(self, total_slots: int, task_types: Iterable[str] = ()) -> None:
        task_types = list(task_types)
        if None in task_types:
            raise ValueError("`None` is reserved for the unallocated slots")
        if total_slots < 0:
            raise ValueError("total_slots cannot be negative")
        self._total_slots = total_slots
        names: list[str | None] = [*task_types, None]
        self._allocated: dict[str | None, int] = {name: 0 for name in names}
        self._available: dict[str | None, int] = {name: 0 for name in names}
        self._allocated[None] = self._available[None] = total_slots
        self._changed = threading.Condition()
        self._turn: dict[str | None, threading.Lock] = {name: threading.Lock() for name in names}  # FCFS per type
        self._moving: dict[str | None, threading.Lock] = {name: threading.Lock() for name in names}
        logger.info(f"Resource counter with {total_slots} slots for task types {task_types}")

    @property
    def total_slots(self) -> int:
        """Slots the counter manages."""
        return self._total_slots

    @property
    def unallocated_slots(self) -> int:
        """Slots allocated to no task type."""
        return self._allocated[None]

    def allocated_slots(self, task: str | None) -> int:
        """Slots allocated to a task type (None: unallocated)."""
        self._check(task)
        return self._allocated[task]

    def available_slots(self, task: str | None) -> int:
        """Allocated slots of a task type not held now."""
        self._check(task)
        return self._available[task]

    def release(self, task: str | None = None, n_slots: int = 1, rerequest: bool = False, timeout: float = -1) -> bool | None:
        """Mark slots of a task type free again; with ``rerequest``, acquire them again at once."""
        self._check(task)
        with self._changed:
            self._available[task] += n_slots
            self._changed.notify_all()
        return self.acquire(task, n_slots, timeout=timeout) if rerequest else None

    def acquire(self, task: str | None, n_slots: int, timeout: float = -1, cancel_if: threading.Event | None = None) -> bool:
        """Block until ``n_slots`` of a task type are free and take them; False on timeout or cancellation."""
        self._check(task)
        deadline = time.monotonic() + timeout if timeout > 0 else float("inf")

        def given_up() -> bool:
            return (cancel_if is not None and cancel_if.is_set()) or time.monotonic() > deadline

        while not self._turn[task].acquire(timeout=_POLL_S):
            if given_up():
                return False
        try:
            with self._changed:
                while self._available[task] < n_slots:
                    if given_up():
                        return False
                    self._changed.wait(_POLL_S)
                self._available[task] -= n_slots
                return True
        finally:
            self._turn[task].release()

    def reallocate(
        self,
        task_from: str | None,
        task_to: str | None,
        n_slots: int | str,
        block: bool = True,
        callback: Callable[[], Any] | None = None,
        timeout: float = -1,
        cancel_if: threading.Event | None = None,
    ) -> bool:
        """Move slots from one task type to another once they are free (``n_slots="all"``: every allocated slot).

        With ``block=False`` the move happens in a background thread that calls ``callback`` when done.
        """
        if task_from == task_to:
            raise ValueError(f"Cannot move slots from {task_from!r} to itself")
        self._check(task_from)
        self._check(task_to)
        if not block:
            def _move() -> None:
                self.reallocate(task_from, task_to, n_slots, True, timeout=timeout, cancel_if=cancel_if)
                if callback is not None:
                    callback()

            threading.Thread(target=_move, daemon=True).start()
            return True
        with self._moving[task_from]:
            count = self._allocated[task_from] if n_slots == "all" else int(n_slots)
            if not self.acquire(task_from, count, timeout, cancel_if):
                return False
            with self._changed:
                self._allocated[task_from] -= count
                self._allocated[task_to] += count
                self._available[task_to] += count
                self._changed.notify_all()
        logger.debug(f"Moved {count} slot(s) from {task_from} to {task_to}")
        return True

    def allocation(self) -> dict[str, int]:
        """Slots allocated to each task type (unallocated ones under ``"None"``), e.g. for a checkpoint."""
        with self._changed:
            return {str(task): count for task, count in self._allocated.items()}

    def restore(self, allocation: dict[str, int], in_use: dict[str, int] | None = None) -> None:
        """Allocate slots as in ``allocation`` (from ``allocation`` in an earlier job), with ``in_use``
        slots per task type already taken by tasks that carry on from that job.

        A counter with a different number of slots gets the same proportions (largest remainders first).
        Slots in use beyond a type's allocation leave it overdrawn until enough of them are released.
        """
        saved = {None if name == "None" else name: count for name, count in allocation.items()}
        for task in saved:
            self._check(task)
        total_saved = sum(saved.values())
        if total_saved <= 0:
            raise ValueError(f"The allocation to restore has no slots: {allocation}")
        shares = {task: count * self._total_slots / total_saved for task, count in saved.items()}
        counts = {task: int(share) for task, share in shares.items()}
        by_remainder = sorted(shares, key=lambda task: shares[task] - counts[task], reverse=True)
        for task in by_remainder[: self._total_slots - sum(counts.values())]:
            counts[task] += 1
        with self._changed:
            for task in self._allocated:
                self._allocated[task] = counts.get(task, 0)
                self._available[task] = self._allocated[task] - (in_use or {}).get(str(task), 0)
            self._changed.notify_all()
        logger.info(f"Restored the allocation {self.allocation()} (in use: {in_use or {}})")

    def _check(self, task: str | None) -> None:
        if task not in self._allocated:
            raise KeyError(f"Unknown task type {task!r}; known: {[t for t in self._allocated if t is not None]}")


class ReallocatorThread(threading.Thread):
    """Gather slots into one task type until ``stop_event`` is set, then move them all to ``disperse_to``."""

    def __init__(
        self,
        resource_counter: ResourceCounter,
        gather_from: str | None,
        gather_to: str | None,
        disperse_to: str | None,
        max_slots: int | None = None,
        stop_event: threading.Event | None = None,
        slot_step: int = 1,
        logger_name: str | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.resource_counter = resource_counter
        self.gather_from, self.gather_to, self.disperse_to = gather_from, gather_to, disperse_to
        self.max_slots = max_slots
        self.slot_step = slot_step
        self.stop_event = stop_event or threading.Event()
        self.logger = logging.getLogger(logger_name) if logger_name else logger

    def run(self) -> None:
        """Gather slots until stopped, then disperse them."""
        counter = self.resource_counter
        while not self.stop_event.is_set() and (self.max_slots is None or counter.allocated_slots(self.gather_to) < self.max_slots):
            counter.reallocate(self.gather_from, self.gather_to, self.slot_step, cancel_if=self.stop_event)
        if not self.stop_event.is_set():
            self.logger.info(f"Gathered {counter.allocated_slots(self.gather_to)} slot(s) from {self.gather_from} into {self.gather_to}")
        self.stop_event.wait()
        if self.gather_to != self.disperse_to:
            counter.reallocate(self.gather_to, self.disperse_to, "all")
        self.logger.info(f"Returned the slots of {self.gather_to} to {self.disperse_to}")
