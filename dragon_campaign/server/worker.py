"""The worker loop: a long-lived Dragon process that runs tasks from its own queue and batches results back.

It reads lists of ``TaskMessage`` from its task queue (``None``: exit) and
cancellations (lists of task ids) from its control queue, and sends ``Ready`` once started (``StartFailed``
if it cannot), ``Results`` with one ``TaskRecord`` per finished task, and ``Partial`` for each item a
streaming generator yields (see ``dragon_campaign.wire``).

A watcher thread reads the control queue while a task runs (see ``_Cancellations``): a task
cancelled before it starts is skipped; the running one gets SIGUSR1, which raises ``TaskCancelled``
at its next Python instruction (a program it started is killed with it, see
``dragon_campaign.executable``). A cancelled task sends no result.

Results are flushed at the end of each batch, or when the oldest buffered result is ``FLUSH_AFTER_S`` old,
so a long task's result never waits behind the next one and a burst of tiny tasks costs one message.
"""

from __future__ import annotations

import atexit
import functools
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import cloudpickle

from dragon_campaign.execution import run_task
from dragon_campaign.server.crowded import Crowding, Doorbell, Ringer, Turns, open_or_none
from dragon_campaign.server.reader import SPIN_S, QueueReader, shortest_sleep
from dragon_campaign.server.slot import WorkerSlot
from dragon_campaign.wire import Partial, Ready, Results, StartFailed, TaskMessage, TaskRecord, WorkerKey, dumps, loads

FLUSH_AFTER_S = 0.002
MAX_RESULTS_PER_MESSAGE = 64
IDLE_TICK_S = 0.5  # how often the watcher looks whether a task runs long (twice a second costs nothing measurable)
WATCH_AFTER_S = 0.25  # a task this old is worth stopping: the worker starts reading cancellations
WATCH_PERIOD_S = 0.05  # how often it reads them then (a running task stops within about half a second)


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


class _Cancellations:
    """Cancellations from the worker's control queue, read while a task runs long enough to be worth stopping.

    The main thread reads the task queue itself, and no other thread of the worker may wake often: a
    second thread that waits inside a Dragon ``get``, or wakes 20 times a second, costs the main thread's
    Dragon calls GIL hand-offs on a busy node (round trips went from 0.4 to 6 ms, or throughput fell by a
    third). So a watcher thread looks every ``IDLE_TICK_S`` whether the running task is ``WATCH_AFTER_S``
    old, and only then drains the control queue, every ``WATCH_PERIOD_S`` until that task ends. (A one-shot
    ``SIGALRM`` per task was tried instead: the kernel may deliver it to any thread, and then a task asleep
    in a system call never noticed.) A cancelled task that has not started is skipped if the worker has
    heard of it; one that runs is stopped by SIGUSR1, sent to the main thread itself.

    A worker with a cancellation doorbell (a crowded node of the steering process, see ``.crowded``) has
    no need to look: its watcher sleeps on the bell and reads the control queue each time the steering
    process rings it, so a cancellation is heard at once, whether its task runs or waits.
    """

    def __init__(self, control: Any, bell: Doorbell | None = None) -> None:
        self.cancelled: set[str] = set()
        self.running: str | None = None  # the task the main thread runs now
        self._started: float | None = None  # when it started (monotonic)
        self._closed = threading.Event()  # set at exit: the watcher's wait ends at once
        self._control = control
        self._bell = bell
        self._main = threading.get_ident()  # made by the main thread, which runs the tasks
        signal.signal(signal.SIGUSR1, self._on_cancel_signal)
        self._watcher = threading.Thread(target=self._watch if bell is None else self._listen, name="worker-cancellations", daemon=True)
        self._watcher.start()

    def begin(self, task_id: str) -> None:
        self.running, self._started = task_id, time.monotonic()

    def end(self) -> None:
        self.running = self._started = None

    def close(self) -> None:
        self._closed.set()
        if self._bell is not None:
            Ringer().ring(self._bell.address)  # ends the listener's wait
        self._watcher.join(2 * IDLE_TICK_S)

    def _listen(self) -> None:
        assert self._bell is not None
        self._drain()  # cancellations posted before the bell was bound were never rung
        while True:
            self._bell.wait(None)
            if self._closed.is_set():
                return
            self._drain()

    def _watch(self) -> None:
        draining = False
        while not self._closed.wait(WATCH_PERIOD_S if draining else IDLE_TICK_S):
            started = self._started
            draining = started is not None and time.monotonic() - started >= WATCH_AFTER_S
            if draining:
                self._drain()

    def _drain(self) -> None:
        while True:
            try:
                message = self._control.get_nowait()
            except queue.Empty:
                return
            self.cancelled.update(loads(message))
            if self.running in self.cancelled:
                signal.pthread_kill(self._main, signal.SIGUSR1)

    def _on_cancel_signal(self, _signum: int, _frame: object) -> None:
        if self.running is not None and self.running in self.cancelled:  # not the next task, if this one just ended
            self.end()  # one raise per task, wherever in _run it lands
            raise TaskCancelled


class _ResultQueue:
    """The queue every worker sends to; on a crowded node of the steering process, taken in turns and followed by
    a ring of the receiver's doorbell (see ``.crowded``).
    """

    def __init__(self, queue: Any, crowding: Crowding) -> None:
        self._queue = queue
        self._turns = open_or_none(Turns, crowding.turns)
        self._ring = None if crowding.receiver is None else functools.partial(Ringer().ring, crowding.receiver)

    def put(self, message: bytes) -> None:
        """Put a message, flushed: it is in the queue when this returns."""
        if self._turns is None:
            self._queue.put(message, flush=True)
        else:
            with self._turns.turn():
                self._queue.put(message, flush=True)
        if self._ring is not None:
            self._ring()


def worker_main(slot: WorkerSlot, generation: int, tasks: Any, control: Any, results: Any, methods_blob: bytes,
                crowding: Crowding) -> None:
    """Entry point of a worker process (``tasks``, ``control`` and ``results`` are Dragon queues; ``crowding``: on a
    crowded node it waits for tasks and sends results without spinning, see ``.crowded`` and ``.reader``).
    """
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the campaign process decides what Ctrl-C means
    try:
        _serve(slot, generation, tasks, control, _ResultQueue(results, crowding), methods_blob, crowding)
    except WorkerStopped:
        pass
    finally:  # exiting anyway: a late SIGTERM must not raise inside Dragon's process epilogue (a traceback)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    leave()


def leave() -> None:
    """Exit at once after the last result was flushed, running the methods' ``atexit`` handlers but not the
    interpreter's teardown. In that teardown every Dragon queue the worker holds releases its reference with a
    request to global services, and on a crowded node (128 workers on 2 cores) those requests spun for minutes
    and outlived the runtime as orphans; the task server destroys the queues itself.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def _serve(slot: WorkerSlot, generation: int, tasks: Any, control: Any, results: _ResultQueue, methods_blob: bytes,
           crowding: Crowding) -> None:
    key = WorkerKey(slot.pool, slot.index, generation)
    try:
        methods: dict[str, Callable[..., Any]] = cloudpickle.loads(methods_blob)
    except BaseException:
        results.put(dumps(StartFailed(key, traceback.format_exc())))
        raise
    info = {"hostname": socket.gethostname(), "pool": slot.pool, "worker": slot.index, "pid": os.getpid(), "gpu": slot.gpu}
    results.put(dumps(Ready(key, info)))

    cancellations = _Cancellations(control, open_or_none(Doorbell, crowding.cancel_bell))
    reader = QueueReader(tasks, crowded=crowding.crowded, shortest_s=shortest_sleep(crowding.wanting, crowding.cores), watch_parent=True,
                         bell=open_or_none(Doorbell, crowding.bell), spin_s=SPIN_S)
    while True:
        batch: list[TaskMessage] | None = loads(reader.get())
        received = time.time()
        if batch is None:
            cancellations.close()
            return
        outbox: list[TaskRecord] = []
        oldest = 0.0
        for position, task in enumerate(batch):
            if task.task_id not in cancellations.cancelled:
                if not outbox:
                    oldest = time.perf_counter()
                record = _run(cancellations, methods, key, results, task, received)
                if record is not None:
                    outbox.append(record)
            last = position == len(batch) - 1
            if outbox and (last or len(outbox) >= MAX_RESULTS_PER_MESSAGE or time.perf_counter() - oldest > FLUSH_AFTER_S):
                # flush: the result must be in the queue before this process can exit, so that the steering
                # process reads it ahead of the notice of this worker's exit
                results.put(dumps(Results(key, time.time(), outbox)))
                outbox = []


def _run(cancellations: _Cancellations, methods: dict[str, Callable[..., Any]], key: WorkerKey, results: _ResultQueue, task: TaskMessage,
         received: float) -> TaskRecord | None:
    """One task's record, or None if it was cancelled while it ran."""
    def emit(item: bytes) -> None:
        results.put(dumps(Partial(key, time.time(), task.task_id, item)))

    try:
        try:
            cancellations.begin(task.task_id)
            return run_task(methods, task.task_id, task.method, task.inputs, task.proxy_rule, received, task.layout, emit)
        finally:
            cancellations.end()
    except TaskCancelled:  # raised by the SIGUSR1 handler at any instruction above, once
        return None
