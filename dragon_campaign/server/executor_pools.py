"""The executor backend: pools that are ``concurrent.futures`` executors at other sites (Parsl, Globus Compute).

At most ``max_in_flight`` of a pool's tasks are submitted at once; the others wait in the priority queue,
so ``update_priority`` and ``cancel`` still apply to them. A task runs there through
``run_remote``, and its future's callback completes it like a worker's
result. A task not yet started can be cancelled through its future; one that runs cannot.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from dragon_campaign.bridges.executors import ExecutorPool
from dragon_campaign.exceptions import WorkerLost
from dragon_campaign.execution import run_remote
from dragon_campaign.models import FailureInformation, WorkerInformation
from dragon_campaign.queues.waiting import WaitingTask, WaitingTasks
from dragon_campaign.server.backend import Completion, Send, layout_of, mark_dispatched
from dragon_campaign.wire import Failure, TaskRecord

logger = logging.getLogger(__name__)


class ExecutorPools:
    """Every executor pool of a task server (see the module's docstring)."""

    def __init__(self, server: Completion) -> None:
        self.server = server
        self._pools: dict[str, ExecutorPool] = {}
        self._serving: dict[str, list[str]] = {}
        self._in_flight: dict[str, dict[str, tuple[WaitingTask, Future | None]]] = defaultdict(dict)  # pool -> task id -> ...

    def accepts(self, pool: object) -> bool:
        """Whether ``pool`` is an executor pool."""
        return isinstance(pool, ExecutorPool)

    def start(self, pools: dict[str, Any], serving: dict[str, list[str]]) -> None:
        """Take these pools over (their executors are already running)."""
        self._serving = serving
        for name, pool in pools.items():
            logger.info(f"Pool {name!r}: {type(pool.executor).__name__} at site {pool.site!r}, up to {pool.max_in_flight} "
                        f"task(s) in flight, methods {serving[name]}")
            self._pools[name] = pool

    def add_pool(self, name: str, pool: Any, methods: list[str]) -> int:
        """Take a pool over while the campaign runs (it starts no Dragon worker)."""
        with self.server.lock:
            self._pools[name] = pool
        logger.info(f"Pool {name!r} at site {pool.site!r} joined")
        return 0

    def take(self, waiting: WaitingTasks, idle_only: bool) -> Send | None:
        """Take tasks up to each pool's ``max_in_flight``; they are submitted once the locks are released (an
        executor may complete a task inside ``submit``: a failed submission does).
        """
        submits: list[tuple[str, WaitingTask]] = []
        for name, pool in self._pools.items():
            in_flight = self._in_flight[name]
            while len(in_flight) < pool.max_in_flight and (task := waiting.peek(self._serving[name])) is not None:
                waiting.pop(task.task_id)
                mark_dispatched(task)
                in_flight[task.task_id] = (task, None)
                submits.append((name, task))
        if not submits:
            return None

        def submit_all() -> None:
            for name, task in submits:
                self._submit(name, task)
        return submit_all

    def _submit(self, name: str, task: WaitingTask) -> None:
        pool = self._pools[name]
        try:
            future = pool.executor.submit(run_remote, self.server.function(task.method), task.task_id, task.method, task.inputs,
                                          self.server.result_rule(task), layout_of(task))
        except Exception as exc:
            future = Future()
            future.set_exception(exc)
        with self.server.lock:
            if task.task_id in self._in_flight[name]:
                self._in_flight[name][task.task_id] = (task, future)
        future.add_done_callback(functools.partial(self._on_done, name, task.task_id))

    def _on_done(self, name: str, task_id: str, future: Future) -> None:
        received = time.time()
        pool = self._pools[name]
        try:
            record, host, sent = future.result()
        except BaseException as exc:  # the executor failed the task: submission, transport, or a cancelled future
            failure = Failure(f"{pool.site!r} could not run the task: {exc!r}", "".join(traceback.format_exception(exc)))
            record, host, sent = TaskRecord(task_id, False, None, failure, received, received, received, 0.0, 0.0, 0.0), {}, received
        info = WorkerInformation(pool=name, backend="executor", site=pool.site, **host)
        with self.server.lock:
            entry = self._in_flight[name].pop(task_id, None)
            if entry is None:
                return  # cancelled, or already reported at shutdown
            task = entry[0]
            result = self.server.complete(task, record, info, sent, received)
            retry = not result.success and self.server.may_retry(task)
        if retry:
            self.server.queues.requeue(task)
        else:
            self.server.finish([result])
        self.server.dispatch()

    def may_take_now(self) -> bool:
        """Whether a pool has fewer than ``max_in_flight`` tasks."""
        return any(len(self._in_flight.get(name, ())) < pool.max_in_flight for name, pool in list(self._pools.items()))

    def cancel(self, task_ids: Iterable[str]) -> list[WaitingTask]:
        """Cancel the futures of tasks not started yet; returns those cancelled (running ones go on)."""
        stopped = []
        for task_id in task_ids:
            for in_flight in self._in_flight.values():
                entry = in_flight.pop(task_id, None)  # first: a cancelled future's callback then reports nothing
                if entry is None:
                    continue
                if entry[1] is not None and entry[1].cancel():
                    stopped.append(entry[0])
                else:  # running (or being submitted): it goes on
                    in_flight[task_id] = entry
        return stopped

    def status(self) -> dict[str, tuple[int, int]]:
        """Per pool: tasks in flight, and ``max_in_flight``."""
        return {name: (len(self._in_flight.get(name, {})), pool.max_in_flight) for name, pool in self._pools.items()}

    def worker_count(self, pool: str | None = None) -> int:
        """Always 0: an executor's workers are its own business."""
        return 0  # an executor's workers are its own business

    def stop(self, grace_ends: float, hurry: threading.Event) -> None:
        """Wait for tasks running at other sites until ``grace_ends``, then report the rest failed (set aside
        when the campaign is checkpointed); their futures are cancelled where possible.
        """
        while self._count_in_flight() and time.monotonic() < grace_ends and not hurry.is_set():
            time.sleep(0.05)
        with self.server.lock:  # taken out first: cancelling a future runs its callback, which must find nothing to complete
            lost = [(self._pools[name].site, task, future) for name, tasks in self._in_flight.items() for task, future in tasks.values()]
            self._in_flight.clear()
        for _, _, future in lost:
            if future is not None:
                future.cancel()
        sites = {task.task_id: site for site, task, _ in lost}
        self.server.end_unfinished([task for _, task, _ in lost], lambda task: FailureInformation.from_exception(
            WorkerLost(f"the task server shut down while the task ran at site {sites[task.task_id]!r}")))

    def close(self) -> None:
        """Nothing to release: the caller shuts its executors down."""

    def _count_in_flight(self) -> int:
        with self.server.lock:
            return sum(len(tasks) for tasks in self._in_flight.values())

