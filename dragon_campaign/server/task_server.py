"""DragonTaskServer: runs the methods of a campaign on pools of workers, fed by a ``DragonQueues``.

The server lives in the steering process beside its queues. It keeps what every kind of pool shares:
which methods run on which pools, the waiting tasks' order (dispatch takes them highest priority first
and offers them to each pool's backend), the completion of results (``results.jsonl``, retries, delivery
to the thinker), cancellation, and the order of the shutdown. Each kind of pool is a backend
(``.backend``): ``.dragon_workers`` for long-lived Dragon processes, ``.executor_pools`` for
executors at other sites (Parsl, Globus Compute).

Dispatch runs inline, in whichever thread submitted a task or received a result. A *supervisor* thread
waits for the kill signal and shuts everything down, every step by a deadline (``_shut_down``): workers
stop (SIGTERM after ``shutdown_grace`` seconds, SIGKILL after ``TERMINATE_S`` more), unfinished tasks come
back as failed results, Dragon queues are destroyed. Processes the campaign cannot go on without
(``watch``: a store's DDict managers) are joined too; if one dies the server stops the campaign and says
why in ``failure``. A suspending kill signal (a checkpoint, see ``dragon_campaign.checkpoint``) sets
unfinished tasks aside in the queues instead, unlogged, so that the next job runs each of them once.

While it runs, what was alive when it started (the campaign's imports, its models, Dragon) is frozen out of
Python's cyclic garbage collector (``gc.freeze``), which otherwise walks every one of them in each full pass:
with the 61,000 objects of a campaign of no-ops, a pass took 45 ms, one every 7,000 tasks at full speed, and
frozen 4 ms (collection per task: 12 of the steering process's 70 us, 7 frozen). Importing torch alone
makes 158,000 more. ``stop`` unfreezes them.
"""

from __future__ import annotations

import atexit
import gc
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dragon_campaign import foreground
from dragon_campaign.bridges.executors import ExecutorPool
from dragon_campaign.journal import Journal
from dragon_campaign.journal.events import pickled_value
from dragon_campaign.models import FailureInformation, Result, WorkerInformation, fill
from dragon_campaign.queues.dragon import DragonQueues
from dragon_campaign.queues.waiting import WaitingTask
from dragon_campaign.runs import ResultLog, RunDirectory
from dragon_campaign.server.backend import Backend, Send, failed
from dragon_campaign.server.dragon_workers import KILL_REPORT_S, RECEIVER_S, TERMINATE_S, DragonWorkers
from dragon_campaign.server.executor_pools import ExecutorPools
from dragon_campaign.server.handles import QUEUE_DESTROY_S
from dragon_campaign.server.pool import WorkerPool
from dragon_campaign.wire import Failure, TaskRecord, loads

logger = logging.getLogger(__name__)

MethodSpec = Callable[..., Any] | tuple[Callable[..., Any], dict[str, Any]]
Pool = WorkerPool | ExecutorPool
RUNTIME_SMOOTHING = 0.2  # weight of the newest sample in a method's running-average duration


class DragonTaskServer:
    """Run registered methods on Dragon worker pools and executors elsewhere, fed by a ``DragonQueues``."""

    def __init__(
        self,
        methods: Sequence[MethodSpec],
        queues: DragonQueues,
        pools: Mapping[str, Pool] | None = None,
        run_dir: str | Path | RunDirectory | None = None,
        shutdown_grace: float = 5.0,
        journal: bool = True,
    ) -> None:
        """
        Args:
            methods: Callables, or ``(callable, options)`` pairs. Options: ``pool`` (a pool name or a list
                of names; default the first pool), ``name`` (default the function's ``__name__``) and
                ``memoize`` (default True: after a resume, a task of this method whose inputs match a task
                that finished in an earlier job is answered from the journal; False for a method whose work
                is a side effect, such as writing to a store that ended with the job).
            queues: The queues this server drains.
            pools: Worker pools (``WorkerPool``) and executors at other sites (``ExecutorPool``) by name
                (default: one CPU pool with a worker per core).
            run_dir: Where ``results.jsonl`` goes (default ``runs/<run-id>``).
            shutdown_grace: Seconds workers get to finish their current task after the kill signal.
            journal: Keep the campaign's journal (``<run-dir>/journal.sqlite``, see ``dragon_campaign.journal``),
                which resumes a campaign whatever ended its job; False: results.jsonl only, no resume after a
                hard kill.
        """
        self.pools: dict[str, Pool] = dict(pools) if pools else {"cpu": WorkerPool()}
        self.queues = queues
        self.shutdown_grace = shutdown_grace
        self.run_dir = run_dir if isinstance(run_dir, RunDirectory) else RunDirectory(run_dir)
        self._functions: dict[str, Callable[..., Any]] = {}
        self._unmemoized: set[str] = set()
        self._serving: dict[str, list[str]] = defaultdict(list)  # pool -> methods it serves
        for spec in methods:
            self._register(spec)
        self.lock = threading.RLock()  # guards the backends' bookkeeping and the running averages
        self._dragon = DragonWorkers(self, self._functions)
        self._backends: list[Backend] = [self._dragon, ExecutorPools(self)]
        self._backend_of: dict[str, Backend] = {name: self._backend_for(pool) for name, pool in self.pools.items()}
        self._dispatching = threading.local()
        self._average_runtime: dict[str, float] = {}
        self._broken_pools: dict[str, str] = {}
        self._stopping = False
        self._started = False
        self._stopped = threading.Event()
        self._result_log: ResultLog | None = None
        self.keeps_journal = journal
        self.journal: Journal | None = None
        self._result_rules: dict[str, Any] = {}  # topic -> (ProxyStore config, threshold) for workers
        self._hurry = threading.Event()
        self.failure: str | None = None  # why the server stopped the campaign itself (a watched process died)
        queues.attach_server(self)

    # -- registration ---------------------------------------------------------------------------------------
    def _register(self, spec: MethodSpec) -> None:
        function, options = spec if isinstance(spec, tuple) else (spec, {})
        unknown = set(options) - {"pool", "name", "memoize"}
        if unknown:
            raise ValueError(f"Unknown method options {sorted(unknown)}; use 'pool', 'name' and 'memoize'")
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
        if not options.get("memoize", True):
            self._unmemoized.add(name)

    def memoizes(self, method: str) -> bool:
        """Whether a task of this method may be answered from the journal of an earlier job."""
        return method in self._functions and method not in self._unmemoized

    def method_names(self) -> list[str]:
        """Names of the registered methods."""
        return list(self._functions)

    # -- life cycle -----------------------------------------------------------------------------------------
    def start(self) -> DragonTaskServer:
        """Start every pool's workers and the server's threads; returns at once (workers warm up in parallel)."""
        if self._started:
            raise RuntimeError("The task server was already started")
        self._started = True
        foreground.guard()  # a bare `dragon script.py` in a terminal: Ctrl-C for the campaign, and a warden
        if self.keeps_journal:
            self.journal = Journal(self.run_dir.path, self.queues.events, on_failure=self.stop_campaign).start()
        else:
            self.queues.events.enabled = False
            self.queues.events.drain()
            self._result_log = ResultLog(self.run_dir.results_path)
        self._result_rules = {topic: rule.for_worker() for topic, rule in self.queues.proxy_rules.items()}
        for backend in self._backends:
            backend.start({name: pool for name, pool in self.pools.items() if self._backend_of[name] is backend}, self._serving)
        supervisor = threading.Thread(target=self._supervise, name="task-server-supervise", daemon=True)
        supervisor.start()
        atexit.register(self.stop)
        gc.freeze()
        self._dispatch()
        return self

    def add_pool(self, name: str, pool: Pool, methods: Iterable[str]) -> int:
        """Start a new pool while the campaign runs; its workers take tasks of these methods at once.
        Returns how many Dragon workers it starts (0 for an executor pool).
        """
        methods = list(methods)
        unknown = [m for m in methods if m not in self._functions]
        if unknown:
            raise ValueError(f"Unknown methods {unknown}; the server runs {self.method_names()}")
        if name in self.pools:
            raise ValueError(f"A pool named {name!r} already exists")
        if not self._started or self._stopping:
            raise RuntimeError("Pools can only be added to a running task server")
        backend = self._backend_for(pool)
        with self.lock:
            self.pools[name] = pool
            self._backend_of[name] = backend
            self._serving[name].extend(methods)
        workers = backend.add_pool(name, pool, methods)
        logger.info(f"Pool {name!r} joined with {workers} worker(s) serving {methods}")
        self._dispatch()
        return workers

    def _backend_for(self, pool: object) -> Backend:
        for backend in self._backends:
            if backend.accepts(pool):
                return backend
        raise TypeError(f"A pool is a WorkerPool or an ExecutorPool, not {type(pool).__name__}")

    @property
    def started(self) -> bool:
        """Whether ``start`` was called."""
        return self._started

    @property
    def stopping(self) -> bool:
        """Whether the shutdown began."""
        return self._stopping

    def worker_count(self, pool: str | None = None, ready: bool = False) -> int:
        """Live Dragon workers, of one pool or of all (``ready``: only those that have started and can take tasks;
        a large pool takes a while, about a second of CPU per worker to import the campaign's modules).
        """
        return self._dragon.worker_count(pool, ready)

    def pool_status(self) -> dict[str, tuple[int, int]]:
        """Per pool: (busy, size) — workers holding a task and live workers, or tasks in flight and ``max_in_flight``."""
        with self.lock:
            status = {name: busy for backend in self._backends for name, busy in backend.status().items()}
        return {name: status[name] for name in self.pools if name in status}

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the server has shut down (after ``queues.send_kill_signal()``); False on timeout."""
        return self._stopped.wait(timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """Send the kill signal and wait for shutdown, at most ``timeout`` seconds (default: ``shutdown_limit``);
        False if it did not finish (safe to call more than once).
        """
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
        ``run_campaign`` raises ``CampaignFailed`` with it.
        """
        self._dragon.watch(puids, what)

    def stop_campaign(self, reason: str) -> None:
        """A process the campaign cannot go on without died: stop the campaign, with ``failure`` saying why."""
        self.failure = reason
        logger.error(f"{reason}; stopping the campaign")
        self.queues.send_kill_signal()

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
        of submissions reaches them as a few large batches rather than as one message per task. With every worker
        busy (a thinker keeping a thousand tasks in flight), it does not even take the locks: that look was a third
        of the steering process's time per task at 10,000 tasks/s.
        """
        if any(backend.may_take_now() for backend in self._backends):
            self._dispatch(idle_only=True)

    def dispatch(self) -> None:
        """Hand waiting tasks to pools with room (backends call it when room frees up)."""
        self._dispatch()

    def _dispatch(self, idle_only: bool = False) -> None:
        """Take waiting tasks in priority order and offer them to every backend's pools.

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
        sends: list[Send] = []
        with self.queues.waiting_tasks() as waiting, self.lock:
            if self._stopping or not waiting:
                return
            for backend in self._backends:
                if (send := backend.take(waiting, idle_only)) is not None:
                    sends.append(send)
        for send in sends:
            send()

    def estimate(self, method: str) -> float | None:
        """The method's running-average duration in seconds, None before its first result."""
        return self._average_runtime.get(method)

    def function(self, method: str) -> Callable[..., Any]:
        """The registered function of a method."""
        return self._functions[method]

    def result_rule(self, task: WaitingTask) -> Any:
        """What a worker does with a large value of the task's topic: None, or a ProxyStore rule."""
        return self._result_rules.get(task.result.topic)

    def cancel_running(self, task_ids: Iterable[str]) -> list[WaitingTask]:
        """Stop these tasks where they run (called by ``DragonQueues.cancel``); returns those stopped.

        A worker's task is dropped here at once (a result that still comes is ignored) and the worker told to
        stop it; a task an executor has not started is cancelled through its future; one it runs is not.
        """
        task_ids = set(task_ids)
        with self.lock:
            stopped = [task for backend in self._backends for task in backend.cancel(task_ids)]
        if stopped:
            logger.info(f"Cancelled {len(stopped)} running task(s)")
            self._dispatch()
        return stopped

    # -- results --------------------------------------------------------------------------------------------
    def complete(self, task: WaitingTask, record: TaskRecord, info: WorkerInformation, sent: float, received: float) -> Result:
        """Fill a task's result from the record of the worker (``info``) that ran it."""
        result = task.result
        previous = self._average_runtime.get(task.method)
        sample = record.running_s + record.deserialize_s + record.serialize_s
        self._average_runtime[task.method] = sample if previous is None else previous + RUNTIME_SMOOTHING * (sample - previous)
        fill(result, mpi_ranks=record.mpi_ranks, worker_info=info)
        fill(result.timestamp, input_received=record.input_received, compute_started=record.compute_started,
             compute_ended=record.compute_ended, result_sent=sent, result_received=received)
        spans = result.time
        fill(spans, deserialize_inputs=record.deserialize_s, running=record.running_s, serialize_results=record.serialize_s,
             proxy=record.proxy_times or {})
        success, failure = record.success, record.failure
        value = None
        if record.value is not None:
            result.message_sizes["value"] = len(record.value)
            tick = time.perf_counter()
            try:
                value = loads(record.value)
            except Exception as exc:
                success, failure = False, Failure(f"Could not unpickle the value in the steering process: {exc!r}", "")
            fill(spans, deserialize_results=time.perf_counter() - tick)
        failure_info = None
        if not success:
            reason = failure or Failure("The worker reported a failure without a reason", "")
            failure_info = FailureInformation(exception=reason.exception, traceback=reason.traceback or None)
        fill(result, value=value, success=success, failure_info=failure_info)
        return result

    def may_retry(self, task: WaitingTask) -> bool:
        """Count a retry if the task has one left (the caller requeues it outside the lock)."""
        result = task.result
        if result.retries >= result.max_retries or self._stopping:
            return False
        result.retries += 1
        logger.info(f"Task {task.task_id} ({task.method}) failed; retry {result.retries} of {result.max_retries}")
        return True

    def finish(self, results: list[Result], final: bool = True) -> None:
        """Log results (the journal, results.jsonl), then hand them to the thinker.

        Args:
            final: The tasks' own outcomes; False for tasks the server failed itself (a shutdown cut them
                short, no pool can run them): a later job runs those again rather than reuse them.
        """
        if not results:
            return
        for result in results:
            result.complete = True  # the task's last result (a streamed intermediate one has complete=False)
        if self.journal is not None:
            completed = self.queues.events.completed
            for result in results:
                value, whole = pickled_value(result)
                succeeded = bool(result.success)
                completed(result.task_id, succeeded, final and whole, None if succeeded else result.failure_reason, result.json_line(), value)
        else:
            assert self._result_log is not None
            try:
                self._result_log.append(results)
            except Exception:
                logger.exception(f"Could not append {len(results)} result(s) to {self._result_log.path}")
        self.queues.deliver(results)

    def pool_broken(self, pool: str, reason: str) -> None:
        """Fail waiting tasks whose every pool is broken, so the thinker hears about it instead of waiting forever."""
        logger.error(f"Pool {pool!r} is broken: {reason}; not restarting its workers")
        with self.lock:
            self._broken_pools.setdefault(pool, reason)
            live = {p for p in self._serving if p not in self._broken_pools}
            dead_methods = {m for p, ms in self._serving.items() if p in self._broken_pools for m in ms}
            dead_methods -= {m for p in live for m in self._serving[p]}
            reasons = "; ".join(f"pool {p!r}: {r}" for p, r in self._broken_pools.items())
        if not dead_methods:
            return
        with self.queues.waiting_tasks() as waiting:
            tasks = waiting.remove(waiting.ids_of(dead_methods))
        self.finish([failed(task, FailureInformation(exception=f"No worker can run {task.method!r}: {reasons}")) for task in tasks],
                    final=False)

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
        Every backend stops its running tasks (Dragon workers first, see ``DragonWorkers.stop``), waiting tasks
        come back failed (or are set aside for a checkpoint), then the backends close.
        """
        with self.queues.waiting_tasks(), self.lock:
            self._stopping = True
        logger.info(f"Kill signal received: stopping {self.worker_count()} worker(s)")
        grace_ends = time.monotonic() + self.shutdown_grace
        for backend in self._backends:
            backend.stop(grace_ends, self._hurry)
        with self.queues.waiting_tasks() as waiting:
            tasks = waiting.drain()
        if self.queues.suspending:
            logger.info(f"Suspended: {len(tasks)} waiting task(s) set aside for the checkpoint")
        self.end_unfinished(tasks, lambda _: FailureInformation(exception="Cancelled: the task server shut down before the task ran"))
        for backend in self._backends:
            backend.close()
        if self.journal is not None:
            self.journal.close("suspended" if self.queues.suspending else "failed" if self.failure else "ended")
        else:
            assert self._result_log is not None
            self._result_log.close()
        atexit.unregister(self.stop)
        gc.unfreeze()
        logger.info("Task server stopped")

    def end_unfinished(self, tasks: list[WaitingTask], failure: Callable[[WaitingTask], FailureInformation]) -> None:
        """Tasks the shutdown cut short: set aside for the checkpoint when suspending, else reported failed."""
        if self.queues.suspending:
            self.queues.set_aside(tasks)
        else:
            self.finish([failed(task, failure(task)) for task in tasks], final=False)
