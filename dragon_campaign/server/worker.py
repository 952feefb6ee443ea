"""The worker loop: a long-lived Dragon process that runs tasks from its own queue and batches results back.

Wire format (pickled bytes over Dragon queues, so Dragon's direct-bytes path carries them):

* steering → worker: a list of ``(task_id, method, pickled_inputs, proxy_rule, layout)``; ``None`` asks the
  worker to exit. ``proxy_rule`` is None or the topic's (ProxyStore config, threshold) for large results;
  ``layout`` is the task's (node_count, cpu_processes), the ranks of an MPI method.
* worker → steering: ``("ready", key, info)`` once started, ``("failed", key, traceback)`` if it could not
  start, and ``("results", key, sent_time, records)`` with one record per finished task (see ``run_task``).

Results are flushed as soon as the worker has nothing else queued, or when the oldest buffered result is
``FLUSH_AFTER_S`` old, so a long task's result never waits behind the next one and a burst of tiny tasks
costs one message.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

import cloudpickle

from dragon_campaign.execution import PICKLE_PROTOCOL, TaskRecord, run_task
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


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise WorkerStopped


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

    while True:
        message = tasks.get()
        received = time.time()
        batch = pickle.loads(message)
        if batch is None:
            return
        outbox: list[TaskRecord] = []
        oldest = 0.0
        for position, (task_id, method, inputs, proxy_rule, layout) in enumerate(batch):
            if not outbox:
                oldest = time.perf_counter()
            outbox.append(run_task(methods, task_id, method, inputs, proxy_rule, received, layout))
            last = position == len(batch) - 1
            if last or len(outbox) >= MAX_RESULTS_PER_MESSAGE or time.perf_counter() - oldest > FLUSH_AFTER_S:
                # flush: the result must be in the queue before this process can exit, so that the steering
                # process reads it ahead of the notice of this worker's exit
                results.put(pickle.dumps(("results", key, time.time(), outbox), protocol=PICKLE_PROTOCOL), flush=True)
                outbox = []
