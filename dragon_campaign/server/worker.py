"""The worker loop: a long-lived Dragon process that runs tasks from its own queue and batches results back.

Wire format (pickled bytes over Dragon queues, so Dragon's direct-bytes path carries them):

* steering → worker: a list of ``(task_id, method, pickled_inputs, proxy_rule, layout)``; ``None`` asks the
  worker to exit; ``("cancel", task_ids)`` withdraws tasks it holds. ``proxy_rule`` is None or the topic's
  (ProxyStore config, threshold) for large results; ``layout`` is the task's (node_count, cpu_processes,
  cpu_threads): an MPI method's ranks, ``_resources``.
* worker → steering: ``("ready", key, info)`` once started, ``("failed", key, traceback)`` if it could not
  start, ``("results", key, sent_time, records)`` with one record per finished task (see ``run_task``), and
  ``("partial", key, sent_time, task_id, pickled_item)`` for each item a streaming generator yields.

A reader thread takes messages off the task queue as they come, so that a cancellation reaches the worker
while it runs a task: a task cancelled before it starts is skipped; the running one gets SIGUSR1, which
raises :class:`TaskCancelled` at its next Python instruction (a program it started is killed with it, see
:mod:`dragon_campaign.executable`). A cancelled task sends no result.

Results are flushed at the end of each batch, or when the oldest buffered result is ``FLUSH_AFTER_S`` old,
so a long task's result never waits behind the next one and a burst of tiny tasks costs one message.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import cloudpickle

from dragon_campaign.execution import PICKLE_PROTOCOL, Layout, TaskRecord, run_task
from dragon_campaign.server.pool import WorkerSlot

FLUSH_AFTER_S = 0.002
MAX_RESULTS_PER_MESSAGE = 64

WorkerKey = tuple[str, int, int]  # pool, index, generation


class WorkerStopped(BaseException):
    """SIGTERM from the task server: leave the current task (its result is never sent) and exit.

    A BaseException, so that ``run_task`` does not turn it into a failed result. Python runs the handler
    between instructions, so a worker inside a Dragon call (a DDict operation, a queue put) finishes that
    call before it stops: killing a process in the middle of one can bring the runtime's local services down.
    """


class TaskCancelled(BaseException):
    """The running task was cancelled by the thinker (a BaseException, so it is not a failed result)."""


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise WorkerStopped


class _Inbox:
    """Messages from the task queue, read by a thread of their own; cancellations take effect at once."""

    def __init__(self, tasks: Any) -> None:
        self.batches: queue.SimpleQueue[list | None] = queue.SimpleQueue()
        self.cancelled: set[str] = set()
        self.running: str | None = None  # the task the main thread runs now
        self._tasks = tasks
        self._main = threading.main_thread().ident
        signal.signal(signal.SIGUSR1, self._on_cancel_signal)
        threading.Thread(target=self._read, name="worker-inbox", daemon=True).start()

    def _read(self) -> None:
        while True:
            message = pickle.loads(self._tasks.get())
            if isinstance(message, tuple):  # ("cancel", task_ids)
                self.cancelled.update(message[1])
                if self.running in self.cancelled:
                    signal.pthread_kill(self._main, signal.SIGUSR1)
                continue
            self.batches.put(message)
            if message is None:
                return
            time.sleep(0)  # hand the GIL to the main thread now: back in Dragon's get, this thread would keep it a while

    def _on_cancel_signal(self, _signum: int, _frame: object) -> None:
        if self.running is not None and self.running in self.cancelled:  # not the next task, if this one just ended
            self.running = None  # one raise per task, wherever in _run it lands
            raise TaskCancelled


def worker_main(slot: WorkerSlot, generation: int, tasks: Any, results: Any, methods_blob: bytes) -> None:
    """Entry point of a worker process (``tasks`` and ``results`` are Dragon queues)."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the campaign process decides what Ctrl-C means
    try:
        _serve(slot, generation, tasks, results, methods_blob)
    except WorkerStopped:
        pass
    finally:  # exiting anyway: a late SIGTERM must not raise inside Dragon's process epilogue (a traceback)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _serve(slot: WorkerSlot, generation: int, tasks: Any, results: Any, methods_blob: bytes) -> None:
    key: WorkerKey = (slot.pool, slot.index, generation)
    try:
        methods: dict[str, Callable[..., Any]] = cloudpickle.loads(methods_blob)
    except BaseException:
        results.put(pickle.dumps(("failed", key, traceback.format_exc()), protocol=PICKLE_PROTOCOL))
        raise
    info = {"hostname": socket.gethostname(), "pool": slot.pool, "worker": slot.index, "pid": os.getpid(), "gpu": slot.gpu}
    results.put(pickle.dumps(("ready", key, info), protocol=PICKLE_PROTOCOL))

    inbox = _Inbox(tasks)
    while True:
        batch = inbox.batches.get()
        received = time.time()
        if batch is None:
            return
        outbox: list[TaskRecord] = []
        oldest = 0.0
        for position, (task_id, method, inputs, proxy_rule, layout) in enumerate(batch):
            if task_id not in inbox.cancelled:
                if not outbox:
                    oldest = time.perf_counter()
                record = _run(inbox, methods, key, results, task_id, method, inputs, proxy_rule, received, layout)
                if record is not None:
                    outbox.append(record)
            last = position == len(batch) - 1
            if outbox and (last or len(outbox) >= MAX_RESULTS_PER_MESSAGE or time.perf_counter() - oldest > FLUSH_AFTER_S):
                # flush: the result must be in the queue before this process can exit, so that the steering
                # process reads it ahead of the notice of this worker's exit
                results.put(pickle.dumps(("results", key, time.time(), outbox), protocol=PICKLE_PROTOCOL), flush=True)
                outbox = []


def _run(inbox: _Inbox, methods: dict[str, Callable[..., Any]], key: WorkerKey, results: Any, task_id: str, method: str,
         inputs: bytes, proxy_rule: Any, received: float, layout: Layout) -> TaskRecord | None:
    """One task's record, or None if it was cancelled while it ran."""
    def emit(item: bytes) -> None:
        results.put(pickle.dumps(("partial", key, time.time(), task_id, item), protocol=PICKLE_PROTOCOL), flush=True)

    try:
        try:
            inbox.running = task_id
            return run_task(methods, task_id, method, inputs, proxy_rule, received, layout, emit)
        finally:
            inbox.running = None
    except TaskCancelled:  # raised by the SIGUSR1 handler at any instruction above, once
        return None
