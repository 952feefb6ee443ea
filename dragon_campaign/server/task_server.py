"""DragonTaskServer: runs the methods of a campaign on pools of long-lived Dragon worker processes.

The server lives in the steering process beside its :class:`~dragon_campaign.queues.DragonQueues`.
Three threads do its work:

* dispatch runs inline, in whichever thread submitted a task or received a result: it takes waiting
  tasks in priority order and hands them to workers that have room (see ``WorkerPool.prefetch_seconds``);
* the *receiver* reads result batches from one Dragon queue, logs each result to ``results.jsonl``,
  retries failures that have retries left, and delivers the rest to the thinker;
* the *monitor* joins worker processes through Dragon's global services; a worker that dies is replaced
  and the tasks it held are retried or reported failed with :class:`~dragon_campaign.exceptions.WorkerLost`.

A pool may also be an :class:`~dragon_campaign.bridges.ExecutorPool`: its tasks are submitted to a
``concurrent.futures.Executor`` at another site (Parsl, Globus Compute), at most ``max_in_flight`` at a
time, and their futures' callbacks complete them like worker results.

A *supervisor* thread waits for the kill signal and shuts everything down, every step by a deadline (see
``_shut_down``): workers stop (SIGTERM after ``shutdown_grace`` seconds, SIGKILL after ``TERMINATE_S``
more), unfinished tasks come back as failed results, Dragon queues are destroyed. Processes the campaign
cannot go on without (``watch``: a store's DDict managers) are joined by the monitor too; if one dies the
server stops the campaign and says why in ``failure``.
A suspending kill signal (a checkpoint, see :mod:`dragon_campaign.checkpoint`) sets unfinished tasks aside
in the queues instead, unlogged, so that the next job runs each of them once.
"""

from __future__ import annotations

import atexit
import functools
import logging
import pickle
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
from dragon.globalservices.process import multi_join
from dragon.native.process import Process
from dragon.native.queue import Queue

from dragon_campaign.bridges.executors import ExecutorPool
from dragon_campaign.exceptions import WorkerLost
from dragon_campaign.execution import PICKLE_PROTOCOL, Layout, TaskRecord, run_remote
from dragon_campaign.models import FailureInformation, Result, WorkerInformation
from dragon_campaign.queues.dragon import DragonQueues
from dragon_campaign.queues.waiting import WaitingTask
from dragon_campaign.runs import ResultLog, RunDirectory
from dragon_campaign.server.pool import WorkerPool, WorkerSlot, gpu_env_var, place_workers, runtime_nodes
from dragon_campaign.server.worker import WorkerKey, worker_main

logger = logging.getLogger(__name__)

MethodSpec = Callable[..., Any] | tuple[Callable[..., Any], dict[str, Any]]
Pool = WorkerPool | ExecutorPool
RESULT_QUEUE_SIZE = 1024
CONTROL_QUEUE_SIZE = 64  # cancellation messages waiting for a worker (each names every task it cancels)
STARTUP_FAILURES_BEFORE_GIVING_UP = 3
RUNTIME_SMOOTHING = 0.2  # weight of the newest sample in a method's running-average duration
# How long the monitor waits on the workers before picking up new ones. A worker's exit ends the wait at
# once; shorter waits cost CPU, since Dragon's timed waits spin for part of the time (about 20% of a
# core at 0.2 s, 9% at 1 s, measured with dragonhpc 0.15).
MONITOR_PERIOD_S = 1.0
# How long the runtime gets to report killed workers at shutdown. A kill request that Dragon never answers
# (seen on a 2-core machine emulating two nodes, with a dead worker left as a zombie) must not hang it.
KILL_REPORT_S = 30.0
TERMINATE_S = 3.0  # how long a worker gets to leave its Dragon call and exit after SIGTERM, before SIGKILL
RECEIVER_S = 10.0  # how long the result receiver gets to take the last messages in and stop
QUEUE_DESTROY_S = 10.0  # how long the queues' destruction may take at shutdown


@dataclass
class _Worker:
    """The steering process's view of one worker process."""

    slot: WorkerSlot
    generation: int
    process: Process
    tasks: Queue
    control: Queue  # cancellations, read by a thread of the worker while its main thread runs a task
    inflight: dict[str, tuple[WaitingTask, float]] = field(default_factory=dict)
    queued_work: float = 0.0
    info: WorkerInformation | None = None

    @property
    def key(self) -> WorkerKey:
        return self.slot.pool, self.slot.index, self.generation

    def release(self, task_id: str) -> WaitingTask:
        """Take a task off this worker (it finished, or was cancelled) and its estimate off the queued work."""
        task, estimate = self.inflight.pop(task_id)
        self.queued_work = max(0.0, self.queued_work - estimate) if self.inflight else 0.0
        return task


class DragonTaskServer:
    """Run registered methods on Dragon worker pools, fed by a :class:`DragonQueues`."""

    def __init__(
        self,
        methods: Sequence[MethodSpec],
        queues: DragonQueues,
        pools: dict[str, Pool] | None = None,
        run_dir: str | Path | RunDirectory | None = None,
        shutdown_grace: float = 5.0,
    ) -> None:
        """
        Args:
            methods: Callables, or ``(callable, options)`` pairs. Options: ``pool`` (a pool name or a list
                of names; default the first pool) and ``name`` (default the function's ``__name__``).
            queues: The queues this server drains.
            pools: Worker pools (``WorkerPool``) and executors at other sites (``ExecutorPool``) by name
                (default: one CPU pool with a worker per core).
            run_dir: Where ``results.jsonl`` goes (default ``runs/<run-id>``).
            shutdown_grace: Seconds workers get to finish their current task after the kill signal.
        """
        self.pools: dict[str, Pool] = dict(pools) if pools else {"cpu": WorkerPool()}
        self.queues = queues
        self.shutdown_grace = shutdown_grace
        self.run_dir = run_dir if isinstance(run_dir, RunDirectory) else RunDirectory(run_dir)
        self._functions: dict[str, Callable[..., Any]] = {}
        self._serving: dict[str, list[str]] = defaultdict(list)  # pool -> methods it serves
        for spec in methods:
            self._register(spec)
        self._lock = threading.RLock()  # guards workers, ownership and running averages
        self._workers: dict[WorkerKey, _Worker] = {}
        self._remote: dict[str, dict[str, tuple[WaitingTask, Future | None]]] = defaultdict(dict)  # executor pool -> in flight
        self._dispatching = threading.local()
        self._owner: dict[str, WorkerKey] = {}
        self._average_runtime: dict[str, float] = {}
        self._startup_failures: dict[str, int] = defaultdict(int)
        self._broken_pools: dict[str, str] = {}
        self._stopping = False
        self._started = False
        self._stopped = threading.Event()
        self._result_log: ResultLog | None = None
        self._result_queue: Queue | None = None
        self._methods_blob = b""
        self._result_rules: dict[str, Any] = {}  # topic -> (ProxyStore config, threshold) for workers
        self._gpu_env_var = "CUDA_VISIBLE_DEVICES"
        self._threads: list[threading.Thread] = []
        self._hurry = threading.Event()
        self._watched: dict[int, str] = {}  # puid -> what it is, for processes the campaign cannot go on without
        self.failure: str | None = None  # why the server stopped the campaign itself (a watched process died)
        self._dead_queues: list[Queue] = []  # task queues of workers that exited, destroyed at shutdown
        queues.attach_server(self)

    # -- registration ---------------------------------------------------------------------------------------
    def _register(self, spec: MethodSpec) -> None:
        function, options = spec if isinstance(spec, tuple) else (spec, {})
        unknown = set(options) - {"pool", "name"}
        if unknown:
            raise ValueError(f"Unknown method options {sorted(unknown)}; use 'pool' and 'name'")
        name = options.get("name", getattr(function, "__name__", None))
        if not name:
            raise ValueError(f"Method {function!r} has no __name__: give it one with ('name': ...)")
        if name in self._functions:
            raise ValueError(f"Two methods are named {name!r}")
        pool_names = options.get("pool", next(iter(self.pools)))
        pool_names = [pool_names] if isinstance(pool_names, str) else list(pool_names)
        for pool in pool_names:
            if pool not in self.pools:
                raise ValueError(f"Method {name!r} is bound to pool {pool!r}, but the pools are {list(self.pools)}")
            self._serving[pool].append(name)
        self._functions[name] = function

    def method_names(self) -> list[str]:
        return list(self._functions)

    # -- life cycle -----------------------------------------------------------------------------------------
    def start(self) -> DragonTaskServer:
        """Start every pool's workers and the server's threads; returns at once (workers warm up in parallel)."""
        if self._started:
            raise RuntimeError("The task server was already started")
        self._started = True
        self._result_log = ResultLog(self.run_dir.results_path)
        self._methods_blob = cloudpickle.dumps(self._functions)
        self._result_rules = {topic: rule.for_worker() for topic, rule in self.queues.proxy_rules.items()}
        self._result_queue = Queue(maxsize=RESULT_QUEUE_SIZE)
        nodes = runtime_nodes()
        self._gpu_env_var = gpu_env_var(nodes)
        for name, pool in self.pools.items():
            if isinstance(pool, ExecutorPool):
                logger.info(f"Pool {name!r}: {type(pool.executor).__name__} at site {pool.site!r}, up to {pool.max_in_flight} "
                            f"task(s) in flight, methods {self._serving[name]}")
                continue
            slots = place_workers(name, pool, nodes)
            logger.info(f"Pool {name!r}: {len(slots)} worker(s) on {sorted({s.hostname for s in slots})}, methods {self._serving[name]}")
            for slot in slots:
                self._start_worker(slot, generation=0)
        for target in (self._receive_loop, self._monitor_loop, self._supervise):
            thread = threading.Thread(target=target, name=f"task-server-{target.__name__.strip('_')}", daemon=True)
            thread.start()
            self._threads.append(thread)
        atexit.register(self.stop)
        self._dispatch()
        return self

    def add_pool(self, name: str, pool: Pool, methods: Iterable[str]) -> list[WorkerSlot]:
        """Start a new pool while the campaign runs; its workers take tasks of these methods at once."""
        methods = list(methods)
        unknown = [m for m in methods if m not in self._functions]
        if unknown:
            raise ValueError(f"Unknown methods {unknown}; the server runs {self.method_names()}")
        if name in self.pools:
            raise ValueError(f"A pool named {name!r} already exists")
        if not self._started or self._stopping:
            raise RuntimeError("Pools can only be added to a running task server")
        slots = [] if isinstance(pool, ExecutorPool) else place_workers(name, pool, runtime_nodes())
        with self._lock:
            self.pools[name] = pool
            self._serving[name].extend(methods)
        for slot in slots:
            self._start_worker(slot, generation=0)
        where = f"site {pool.site!r}" if isinstance(pool, ExecutorPool) else f"{len(slots)} worker(s)"
        logger.info(f"Pool {name!r} joined with {where} serving {methods}")
        self._dispatch()
        return slots

    @property
    def started(self) -> bool:
        return self._started

    def worker_count(self, pool: str | None = None) -> int:
        """Live workers, of one pool or of all."""
        with self._lock:
            return sum(1 for w in self._workers.values() if pool is None or w.slot.pool == pool)

    def pool_status(self) -> dict[str, tuple[int, int]]:
        """Per pool: (busy, size) — workers holding a task and live workers, or tasks in flight and ``max_in_flight``."""
        with self._lock:
            status = {}
            for name, pool in self.pools.items():
                if isinstance(pool, ExecutorPool):
                    status[name] = (len(self._remote.get(name, {})), pool.max_in_flight)
                else:
                    workers = [w for w in self._workers.values() if w.slot.pool == name]
                    status[name] = (sum(1 for w in workers if w.inflight), len(workers))
            return status

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the server has shut down (after ``queues.send_kill_signal()``); False on timeout."""
        return self._stopped.wait(timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """Send the kill signal and wait for shutdown, at most ``timeout`` seconds (default: ``shutdown_limit``);
        False if it did not finish (safe to call more than once)."""
        if not self._started:
            return True
        self.queues.send_kill_signal()
        if self.join(self.shutdown_limit if timeout is None else timeout):
            return True
        logger.error("The task server did not shut down in time; going on without it")
        return False

    def watch(self, puids: Iterable[int], what: str) -> None:
        """Stop the campaign if one of these Dragon processes exits before the shutdown: processes it cannot
        go on without, such as a store's DDict managers (``DDictStore.service_puids()``: once one dies, its
        data are gone and every task that reaches it waits forever). ``failure`` then says which, and
        ``run_campaign`` raises ``CampaignFailed`` with it."""
        with self._lock:
            self._watched.update(dict.fromkeys(puids, what))

    def hurry(self) -> None:
        """Stop workers now rather than after ``shutdown_grace`` (a second Ctrl-C): their tasks are cut short."""
        self._hurry.set()

    @property
    def shutdown_limit(self) -> float:
        """The longest the shutdown can take after the kill signal, every deadline added up."""
        return self.shutdown_grace + TERMINATE_S + KILL_REPORT_S + 2 * RECEIVER_S + QUEUE_DESTROY_S + 5.0

    def __enter__(self) -> DragonTaskServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- dispatch -------------------------------------------------------------------------------------------
    def tasks_waiting(self) -> None:
        """New tasks arrived: hand them to idle workers at once (lowest latency for a sequential thinker).

        Busy workers are topped up when their results come back (``_dispatch`` from the receiver), so a burst
        of submissions reaches them as a few large batches rather than as one message per task.
        """
        self._dispatch(idle_only=True)

    def _dispatch(self, idle_only: bool = False) -> None:
        """Take waiting tasks in priority order and send them to workers with room, one message per worker.

        An executor may complete a task inside ``submit`` (a failed submission does); its callback's
        dispatch then only asks this one to go round again, instead of recursing once per task.
        """
        if getattr(self._dispatching, "active", False):
            self._dispatching.again = True
            return
        self._dispatching.active = True
        try:
            self._dispatching.again = True
            while self._dispatching.again:
                self._dispatching.again = False
                self._dispatch_once(idle_only)
        finally:
            self._dispatching.active = False

    def _dispatch_once(self, idle_only: bool) -> None:
        if not self._started:
            return
        if self.queues.killed.is_set():
            self._stopping = True
            return
        sends: dict[WorkerKey, list[WaitingTask]] = defaultdict(list)
        submits: list[tuple[str, WaitingTask]] = []
        with self.queues.waiting_tasks() as waiting, self._lock:
            if self._stopping or not waiting:
                return
            for pool_name, methods in self._serving.items():
                pool = self.pools[pool_name]
                if isinstance(pool, ExecutorPool):
                    in_flight = self._remote[pool_name]
                    while len(in_flight) < pool.max_in_flight and (task := waiting.peek(methods)) is not None:
                        waiting.pop(task.task_id)
                        self._stamp_dispatch(task)
                        in_flight[task.task_id] = (task, None)
                        submits.append((pool_name, task))
                    continue
                workers = [w for w in self._workers.values() if w.slot.pool == pool_name and (not idle_only or not w.inflight)]
                assigned = True
                while assigned:  # round-robin, one task per worker per pass
                    assigned = False
                    for worker in workers:
                        task = waiting.peek(methods)
                        if task is None:
                            break
                        if (not idle_only or not worker.inflight) and self._has_room(worker, task):
                            waiting.pop(task.task_id)
                            self._assign(worker, task)
                            sends[worker.key].append(task)
                            assigned = True
            for key, tasks in sends.items():
                self._send(self._workers[key], tasks)
        for pool_name, task in submits:
            self._submit(pool_name, task)

    def _has_room(self, worker: _Worker, task: WaitingTask) -> bool:
        if not worker.inflight:
            return True
        pool = self.pools[worker.slot.pool]
        estimate = self._average_runtime.get(task.method, float("inf"))
        return len(worker.inflight) <= pool.max_prefetch and worker.queued_work + estimate <= pool.prefetch_seconds

    @staticmethod
    def _stamp_dispatch(task: WaitingTask) -> None:
        result: Result = task.payload[0]
        result.priority = task.priority
        result.timestamp.dispatched = time.time()

    def _assign(self, worker: _Worker, task: WaitingTask) -> None:
        self._stamp_dispatch(task)
        estimate = self._average_runtime.get(task.method, 0.0)
        worker.inflight[task.task_id] = (task, estimate)
        worker.queued_work += estimate
        self._owner[task.task_id] = worker.key

    def _send(self, worker: _Worker, tasks: list[WaitingTask]) -> None:
        message = pickle.dumps(
            [(t.task_id, t.method, t.payload[1], self._result_rules.get(t.payload[0].topic), _layout(t)) for t in tasks],
            protocol=PICKLE_PROTOCOL,
        )
        worker.tasks.put(message)

    def _submit(self, pool_name: str, task: WaitingTask) -> None:
        """Hand a task to an executor pool; its future's callback completes it (``_on_remote_done``)."""
        pool = self.pools[pool_name]
        assert isinstance(pool, ExecutorPool)
        rule = self._result_rules.get(task.payload[0].topic)
        try:
            future = pool.executor.submit(run_remote, self._functions[task.method], task.task_id, task.method, task.payload[1], rule,
                                          _layout(task))
        except Exception as exc:
            future = Future()
            future.set_exception(exc)
        with self._lock:
            if task.task_id in self._remote[pool_name]:
                self._remote[pool_name][task.task_id] = (task, future)
        future.add_done_callback(functools.partial(self._on_remote_done, pool_name, task.task_id))

    def _on_remote_done(self, pool_name: str, task_id: str, future: Future) -> None:
        received = time.time()
        pool = self.pools[pool_name]
        assert isinstance(pool, ExecutorPool)
        try:
            record, host, sent = future.result()
        except BaseException as exc:  # the executor failed the task: submission, transport, or a cancelled future
            failure = (f"{pool.site!r} could not run the task: {exc!r}", "".join(traceback.format_exception(exc)))
            record, host, sent = (task_id, False, None, failure, (received, received, received), (0.0, 0.0, 0.0), None, None), {}, received
        info = WorkerInformation(pool=pool_name, backend="executor", site=pool.site, **host)
        with self._lock:
            entry = self._remote[pool_name].pop(task_id, None)
            if entry is None:
                return  # already reported at shutdown
            task = entry[0]
            result = self._complete(task, record, info, sent, received)
            retry = not result.success and self._may_retry(task)
        if retry:
            self.queues.requeue(task)
        else:
            self._finish([result])
        self._dispatch()

    # -- results --------------------------------------------------------------------------------------------
    def _receive_loop(self) -> None:
        assert self._result_queue is not None
        while True:
            message = self._result_queue.get()  # blocking: a timed get of a Dragon queue spins (dragonhpc 0.15)
            received = time.time()
            kind, key, *body = pickle.loads(message)
            if kind == "stop":
                return
            try:
                if kind == "results":
                    self._on_results(key, body[0], body[1], received)
                elif kind == "partial":
                    self._on_partial(key, body[0], body[1], body[2], received)
                elif kind == "ready":
                    self._on_ready(key, body[0])
                elif kind == "exited":
                    self._on_worker_exit(key, body[0])
                elif kind == "failed":
                    logger.error(f"Worker {key} of pool {key[0]!r} could not start:\n{body[0]}")
                    with self._lock:
                        self._broken_pools.setdefault(key[0], body[0].strip().splitlines()[-1])
            except Exception:
                logger.exception(f"Could not process a {kind!r} message from worker {key}")

    def _on_ready(self, key: WorkerKey, info: dict[str, Any]) -> None:
        with self._lock:
            worker = self._workers.get(key)
            if worker is not None:
                worker.info = WorkerInformation(**info)
                self._startup_failures[key[0]] = 0
        logger.debug(f"Worker {key} ready on {info['hostname']}")

    def _on_results(self, key: WorkerKey, sent: float, records: list[TaskRecord], received: float) -> None:
        completed: list[Result] = []
        retries: list[WaitingTask] = []
        with self._lock:
            worker = self._workers.get(key)
            for record in records:
                task_id = record[0]
                if worker is None or self._owner.get(task_id) != key:
                    continue  # the task was already given up for lost and re-run elsewhere
                del self._owner[task_id]
                task = worker.release(task_id)
                info = worker.info or WorkerInformation(
                    hostname=worker.slot.hostname, pool=worker.slot.pool, worker=worker.slot.index, gpu=worker.slot.gpu)
                result = self._complete(task, record, info, sent, received)
                if result.success or not self._may_retry(task):
                    completed.append(result)
                else:
                    retries.append(task)
        self._finish(completed)
        for task in retries:
            self.queues.requeue(task)
        self._dispatch()

    def _on_partial(self, key: WorkerKey, sent: float, task_id: str, payload: bytes, received: float) -> None:
        """An item a streaming generator yielded: a copy of the task's result with ``complete=False``."""
        with self._lock:
            worker = self._workers.get(key)
            if worker is None or self._owner.get(task_id) != key:
                return  # cancelled, or given up for lost
            task = worker.inflight[task_id][0]
            info = worker.info
        final: Result = task.payload[0]
        partial = final.model_copy(update={
            "timestamp": final.timestamp.model_copy(update={"result_sent": sent, "result_received": received}),
            "time": final.time.model_copy(), "message_sizes": {**final.message_sizes, "value": len(payload)},
            "worker_info": info, "success": True, "complete": False,
        })
        try:
            partial.value = pickle.loads(payload)
        except Exception:
            logger.exception(f"Could not unpickle an intermediate result of task {task_id} ({task.method}); dropped")
            return
        self.queues.deliver([partial])

    def cancel_running(self, task_ids: Iterable[str]) -> list[WaitingTask]:
        """Stop these tasks where they run (called by ``DragonQueues.cancel``); returns those stopped.

        A worker's task is dropped here at once (a result that still comes is ignored) and the worker told to
        stop it; a task an executor has not started is cancelled through its future; one it runs is not.
        """
        stopped: list[WaitingTask] = []
        notices: dict[WorkerKey, list[str]] = defaultdict(list)
        with self._lock:
            for task_id in task_ids:
                key = self._owner.pop(task_id, None)
                if key is not None:
                    stopped.append(self._workers[key].release(task_id))
                    notices[key].append(task_id)
                    continue
                for in_flight in self._remote.values():
                    entry = in_flight.pop(task_id, None)  # first: a cancelled future's callback then reports nothing
                    if entry is None:
                        continue
                    if entry[1] is not None and entry[1].cancel():
                        stopped.append(entry[0])
                    else:  # running (or being submitted): it goes on
                        in_flight[task_id] = entry
            for key, ids in notices.items():
                self._post(self._workers[key].control, pickle.dumps(ids, protocol=PICKLE_PROTOCOL), self._workers[key].key)
        if stopped:
            logger.info(f"Cancelled {len(stopped)} running task(s)")
            self._dispatch()
        return stopped

    def _complete(self, task: WaitingTask, record: TaskRecord, info: WorkerInformation, sent: float, received: float) -> Result:
        """Fill a task's result from the record of the worker (``info``) that ran it."""
        _, success, payload, failure, (got, started, ended), (deserialize, running, serialize), ranks, proxy_times = record
        result: Result = task.payload[0]
        result.mpi_ranks = ranks
        previous = self._average_runtime.get(task.method)
        sample = running + deserialize + serialize
        self._average_runtime[task.method] = sample if previous is None else previous + RUNTIME_SMOOTHING * (sample - previous)
        result.worker_info = info
        stamps, spans = result.timestamp, result.time
        stamps.input_received, stamps.compute_started, stamps.compute_ended = got, started, ended
        stamps.result_sent, stamps.result_received = sent, received
        spans.deserialize_inputs, spans.running, spans.serialize_results = deserialize, running, serialize
        spans.proxy = proxy_times or {}
        if success:
            result.message_sizes["value"] = len(payload)
            tick = time.perf_counter()
            try:
                result.value = pickle.loads(payload)
            except Exception as exc:
                success, failure = False, (f"Could not unpickle the value in the steering process: {exc!r}", "")
            spans.deserialize_results = time.perf_counter() - tick
        result.success = success
        result.failure_info = None if success else FailureInformation(exception=failure[0], traceback=failure[1] or None)
        return result

    def _may_retry(self, task: WaitingTask) -> bool:
        """Count a retry if the task has one left (the caller requeues it outside the lock)."""
        result: Result = task.payload[0]
        if result.retries >= result.max_retries or self._stopping:
            return False
        result.retries += 1
        logger.info(f"Task {task.task_id} ({task.method}) failed; retry {result.retries} of {result.max_retries}")
        return True

    def _finish(self, results: list[Result]) -> None:
        """Log results to results.jsonl, then hand them to the thinker."""
        if not results:
            return
        for result in results:
            result.complete = True  # the task's last result (a streamed intermediate one has complete=False)
        assert self._result_log is not None
        try:
            self._result_log.append(results)
        except Exception:
            logger.exception(f"Could not append {len(results)} result(s) to {self._result_log.path}")
        self.queues.deliver(results)

    # -- worker processes -----------------------------------------------------------------------------------
    def _start_worker(self, slot: WorkerSlot, generation: int) -> None:
        pool = self.pools[slot.pool]
        tasks = Queue(maxsize=pool.max_prefetch + 4)
        control = Queue(maxsize=CONTROL_QUEUE_SIZE)
        process = Process(
            target=worker_main,
            args=(slot, generation, tasks, control, self._result_queue, self._methods_blob),
            env=slot.environment(pool, self._gpu_env_var),
            policy=slot.policy(),
        )
        process.start()
        with self._lock:
            self._workers[(slot.pool, slot.index, generation)] = _Worker(slot, generation, process, tasks, control)

    def _monitor_loop(self) -> None:
        """Report worker exits through the result queue, behind every result the worker sent before dying."""
        assert self._result_queue is not None
        reported: set[int] = set()
        while not self._stopped.is_set():
            with self._lock:
                by_puid = {w.process.puid: w.key for w in self._workers.values() if w.process.puid not in reported}
                watched = {puid: what for puid, what in self._watched.items() if puid not in reported}
            if not by_puid and not watched:
                time.sleep(0.05)
                continue
            try:
                exited, _ = multi_join([*by_puid, *watched], timeout=MONITOR_PERIOD_S)
            except Exception:
                logger.exception("Could not poll the worker processes")
                time.sleep(0.5)
                continue
            for puid, exit_code in exited or []:
                reported.add(puid)
                if puid in by_puid:
                    self._result_queue.put(pickle.dumps(("exited", by_puid[puid], exit_code), protocol=PICKLE_PROTOCOL))
                elif puid in watched and not self._stopping:
                    self.failure = f"{watched[puid]}: process {puid} exited with code {exit_code}"
                    logger.error(f"{self.failure}; stopping the campaign")
                    self.queues.send_kill_signal()

    def _on_worker_exit(self, key: WorkerKey, exit_code: int | None) -> None:
        lost_results: list[Result] = []
        retries: list[WaitingTask] = []
        with self._lock:
            worker = self._workers.pop(key, None)
            if worker is None:
                return
            stopping = self._stopping
            where = f"worker {worker.slot.index} of pool {worker.slot.pool!r} on {worker.slot.hostname}"
            if stopping:
                reason = f"the task server shut down while the task ran ({where} exited with code {exit_code})"
            else:
                reason = f"{where} exited with code {exit_code}"
                logger.warning(f"{reason.capitalize()} holding {len(worker.inflight)} task(s)")
            interrupted = [task for task, _ in worker.inflight.values()]
            for task in interrupted:
                self._owner.pop(task.task_id, None)
            worker.inflight.clear()
            suspended: list[WaitingTask] = []
            if stopping and self.queues.suspending:  # kept for the checkpoint, not failed
                suspended, interrupted = interrupted, []
            for task in interrupted:
                result = _failed(task, FailureInformation.from_exception(WorkerLost(reason)))
                if self._may_retry(task):
                    retries.append(task)
                else:
                    lost_results.append(result)
            if worker.info is None and not stopping:
                self._startup_failures[worker.slot.pool] += 1
            give_up = self._startup_failures[worker.slot.pool] >= STARTUP_FAILURES_BEFORE_GIVING_UP
            if give_up:
                self._broken_pools.setdefault(worker.slot.pool, f"workers exit at start-up (last exit code {exit_code})")
            self._dead_queues += [worker.tasks, worker.control]  # destroyed at shutdown, by a deadline: never in the receiver
        self.queues.set_aside(suspended)  # outside the server's lock: the queues' lock comes first
        self._finish(lost_results)
        for task in retries:
            self.queues.requeue(task)
        if stopping:
            return
        if give_up:
            logger.error(f"Pool {worker.slot.pool!r} is broken: {self._broken_pools[worker.slot.pool]}; not restarting its workers")
            self._fail_unservable()
            return
        replacement = threading.Thread(target=self._replace_worker, args=(worker,), daemon=True)
        replacement.start()

    def _replace_worker(self, worker: _Worker) -> None:
        self._start_worker(worker.slot, worker.generation + 1)
        self._dispatch()

    def _fail_unservable(self) -> None:
        """Fail waiting tasks whose every pool is broken, so the thinker hears about it instead of waiting forever."""
        with self._lock:
            live = {p for p in self._serving if p not in self._broken_pools}
            dead_methods = {m for p, ms in self._serving.items() if p in self._broken_pools for m in ms}
            dead_methods -= {m for p in live for m in self._serving[p]}
            reasons = "; ".join(f"pool {p!r}: {r}" for p, r in self._broken_pools.items())
        if not dead_methods:
            return
        with self.queues.waiting_tasks() as waiting:
            tasks = waiting.remove(waiting.ids_of(dead_methods))
        self._finish([_failed(task, FailureInformation(exception=f"No worker can run {task.method!r}: {reasons}")) for task in tasks])

    # -- shutdown -------------------------------------------------------------------------------------------
    def _supervise(self) -> None:
        self.queues.killed.wait()
        try:
            self._shut_down()
        except Exception:  # never leave stop() and join() waiting forever
            logger.exception("The task server's shutdown failed")
        finally:
            self._stopped.set()

    def _shut_down(self) -> None:
        """Stop everything, each step by a deadline: nothing the runtime fails to answer is waited on forever.

        Workers get the stop message and ``shutdown_grace`` seconds (none after :meth:`hurry`) to finish their
        tasks; then SIGTERM, which a worker turns into an exit at its next Python instruction, so that it
        leaves any Dragon call (a DDict operation, a queue put) whole instead of dying inside it; then, after
        ``TERMINATE_S``, SIGKILL; a worker whose exit the runtime has not reported ``KILL_REPORT_S`` later is
        given up for lost.
        """
        with self.queues.waiting_tasks(), self._lock:
            self._stopping = True
            workers = list(self._workers.values())
        logger.info(f"Kill signal received: stopping {len(workers)} worker(s)")
        grace_ends = time.monotonic() + self.shutdown_grace
        stop_message = pickle.dumps(None, protocol=PICKLE_PROTOCOL)
        for worker in workers:
            self._post(worker.tasks, stop_message, worker.key, timeout=1)
        self._wait_for_workers(grace_ends, until=self._hurry)
        for signal_name, ask, wait_s in (("SIGTERM", Process.terminate, TERMINATE_S), ("SIGKILL", Process.kill, KILL_REPORT_S)):
            with self._lock:
                stragglers = list(self._workers.values())
            for worker in stragglers:
                logger.warning(f"Worker {worker.key} did not stop{'' if self._hurry.is_set() else f' within {self.shutdown_grace:g} s'}; "
                               f"sending {signal_name}")
                threading.Thread(target=self._signal, args=(worker, ask), daemon=True).start()  # a request can hang
            self._wait_for_workers(time.monotonic() + wait_s)
        with self._lock:
            unreported = [w.key for w in self._workers.values()]
        for key in unreported:
            logger.error(f"The runtime never reported the exit of killed worker {key}; giving it up")
            self._result_queue.put(pickle.dumps(("exited", key, None), protocol=PICKLE_PROTOCOL))
        self._wait_for_workers(time.monotonic() + RECEIVER_S)  # the receiver takes them out
        while self._remote_in_flight() and time.monotonic() < grace_ends and not self._hurry.is_set():
            time.sleep(0.05)
        self._fail_remote_in_flight()
        self._result_queue.put(pickle.dumps(("stop", None), protocol=PICKLE_PROTOCOL))
        for thread in self._threads:
            if thread is not threading.current_thread() and thread.name.endswith("receive_loop"):
                thread.join(RECEIVER_S)
                if thread.is_alive():
                    logger.error(f"The result receiver did not stop within {RECEIVER_S:g} s; abandoning it")
        self._fail_leftovers()
        assert self._result_queue is not None and self._result_log is not None
        with self._lock:
            channels = [*self._dead_queues, *(q for w in self._workers.values() for q in (w.tasks, w.control)), self._result_queue]
            self._dead_queues.clear()
        _destroy_queues(channels)
        self._result_log.close()
        atexit.unregister(self.stop)
        logger.info("Task server stopped")

    def _wait_for_workers(self, deadline: float, until: threading.Event | None = None) -> None:
        while self.worker_count() and time.monotonic() < deadline and not (until is not None and until.is_set()):
            time.sleep(0.05)

    @staticmethod
    def _post(into: Queue, message: bytes, key: WorkerKey, timeout: float | None = None) -> None:
        """Put a control message (stop, cancel) into a worker's queue from a thread of its own: a put into the
        full queue of a worker that is stuck never returns, timeout or not (dragonhpc 0.15)."""
        def put() -> None:
            try:
                into.put(message, timeout=timeout)
            except Exception:
                logger.debug(f"Could not send a control message to worker {key}", exc_info=True)
        threading.Thread(target=put, name=f"post-{key}", daemon=True).start()

    @staticmethod
    def _signal(worker: _Worker, ask: Callable[[Process], None]) -> None:
        try:
            ask(worker.process)
        except Exception:
            logger.debug(f"Worker {worker.key} was already gone", exc_info=True)

    def _remote_in_flight(self) -> int:
        with self._lock:
            return sum(len(tasks) for tasks in self._remote.values())

    def _fail_remote_in_flight(self) -> None:
        """Report tasks still running at other sites as failed, or set them aside when suspending
        (their futures are cancelled where possible)."""
        with self._lock:  # taken out first: cancelling a future runs its callback, which must find nothing to complete
            lost = [(self.pools[name].site, task, future) for name, tasks in self._remote.items() for task, future in tasks.values()]  # type: ignore[union-attr]
            self._remote.clear()
        for _, _, future in lost:
            if future is not None:
                future.cancel()
        sites = {task.task_id: site for site, task, _ in lost}
        self._end_unfinished([task for _, task, _ in lost], lambda task: FailureInformation.from_exception(
            WorkerLost(f"the task server shut down while the task ran at site {sites[task.task_id]!r}")))

    def _fail_leftovers(self) -> None:
        """Report every task that never finished as failed, so no one waits for it (set them aside when suspending)."""
        with self.queues.waiting_tasks() as waiting, self._lock:
            tasks = waiting.drain()
            self._owner.clear()
        if self.queues.suspending:
            logger.info(f"Suspended: {len(tasks)} waiting task(s) set aside for the checkpoint")
        self._end_unfinished(tasks, lambda _: FailureInformation(exception="Cancelled: the task server shut down before the task ran"))

    def _end_unfinished(self, tasks: list[WaitingTask], failure: Callable[[WaitingTask], FailureInformation]) -> None:
        """Tasks the shutdown cut short: set aside for the checkpoint when suspending, else reported failed."""
        if self.queues.suspending:
            self.queues.set_aside(tasks)
        else:
            self._finish([_failed(task, failure(task)) for task in tasks])


def _destroy_queues(channels: list[Queue]) -> None:
    """Destroy Dragon queues, each in a thread of its own, all by one deadline (a destroy is a request to
    global services, which a loaded runtime may never answer)."""

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


def _layout(task: WaitingTask) -> Layout:
    """What the task's resources ask for: nodes, processes per node (the ranks of an MPI method), threads."""
    resources = task.payload[0].resources
    return resources.node_count, resources.cpu_processes, resources.cpu_threads


def _failed(task: WaitingTask, failure: FailureInformation) -> Result:
    """The task's result, marked failed with ``failure`` (the task did not complete)."""
    result: Result = task.payload[0]
    result.success = False
    result.failure_info = failure
    return result
