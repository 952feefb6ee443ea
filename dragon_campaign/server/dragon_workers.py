"""The Dragon backend: pools of long-lived worker processes, each fed by a Dragon queue of its own.

Two threads of the steering process serve every Dragon pool:

* the *receiver* reads the one result queue all workers share (``wire`` messages: results, streamed items,
  a worker ready or unable to start, a worker's exit) and completes tasks through the task server;
* the *monitor* joins the worker processes through Dragon's global services and posts each exit on that
  queue, behind every result the worker sent; a worker that dies is replaced and the tasks it held are
  retried or reported failed with ``WorkerLost``. It joins the
  processes the campaign cannot go on without (``watch``) too, and stops the campaign if one dies.

Workers of a relayed pool on other nodes than the steering process's are reached through their node's relay
(``.relay``): a dispatch puts one message per node on its inbox, and the node's results come back in batches.

A worker takes a batch of tasks when it has room (``WorkerPool.prefetch_seconds`` of estimated work beyond
its current task, from the method's running average), so long tasks leave the waiting queue in priority
order and tiny ones travel in batches.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import cloudpickle
from dragon.globalservices.process import multi_join
from dragon.native.process import Process
from dragon.native.queue import Queue

from dragon_campaign.exceptions import WorkerLost
from dragon_campaign.models import FailureInformation, Result, WorkerInformation
from dragon_campaign.queues.waiting import WaitingTask, WaitingTasks
from dragon_campaign.server.backend import Completion, Send, failed, layout_of, mark_dispatched
from dragon_campaign.server.crowded import Crowding, Doorbell, Ringer, new_bell, new_turns
from dragon_campaign.server.exits import LocalExits
from dragon_campaign.server.handles import RelayHandle, WorkerHandle, destroy_queues, post, signal_process
from dragon_campaign.server.pool import WorkerPool, WorkerSlot, gpu_env_var, place_workers, runtime_nodes
from dragon_campaign.server.reader import IDLE_POLL_S, MAX_POLL_S, SPIN_S, QueueReader
from dragon_campaign.server.relay import INBOX_SIZE, RELAY_ENV, relay_main
from dragon_campaign.server.slot import import_path, on_node
from dragon_campaign.server.worker import worker_main
from dragon_campaign.wire import (
    Attach,
    Exited,
    Handoff,
    Partial,
    Ready,
    Relayed,
    Results,
    StartFailed,
    StopReceiver,
    TaskMessage,
    WorkerKey,
    dumps,
    loads,
)

logger = logging.getLogger(__name__)

RESULT_QUEUE_SIZE = 1024
RECEIVE_BATCH = 256  # the most messages the receiver takes before it completes them
CONTROL_QUEUE_SIZE = 64  # cancellation messages waiting for a worker (each names every task it cancels)
STARTUP_FAILURES_BEFORE_GIVING_UP = 3
# How long the monitor waits on the workers before picking up new ones. A worker's exit ends the wait at
# once; shorter waits cost CPU, since Dragon's timed waits spin for part of the time (about 20% of a
# core at 0.2 s, 9% at 1 s, measured with dragonhpc 0.15).
MONITOR_PERIOD_S = 1.0
# How long the runtime gets to report killed workers at shutdown. A kill request that Dragon never answers
# (seen on a 2-core machine emulating two nodes, with a dead worker left as a zombie) must not hang it.
KILL_REPORT_S = 30.0
TERMINATE_S = 3.0  # how long a worker gets to leave its Dragon call and exit after SIGTERM, before SIGKILL
RECEIVER_S = 10.0  # how long the result receiver gets to take the last messages in and stop (and a relay, to forward them)


class DragonWorkers:
    """Every Dragon pool of a task server (see the module's docstring)."""

    def __init__(self, server: Completion, methods: dict[str, Callable[..., Any]]) -> None:
        self.server = server
        self._methods = methods
        self._pools: dict[str, WorkerPool] = {}
        self._serving: dict[str, list[str]] = {}
        self._workers: dict[WorkerKey, WorkerHandle] = {}
        self._owner: dict[str, WorkerKey] = {}  # task id -> the worker that holds it
        self._startup_failures: dict[str, int] = defaultdict(int)
        self._start_failures: dict[str, str] = {}  # pool -> why its workers cannot start
        self._watched: dict[int, str] = {}  # puid -> what it is, for processes the campaign cannot go on without
        self._dead_queues: list[Queue] = []  # queues of workers that exited, destroyed at close
        self._result_queue: Queue | None = None
        self._methods_blob = b""
        self._gpu_env_var = "CUDA_VISIBLE_DEVICES"
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._cores: dict[str, int] = {}  # hostname -> cores, of every node of the runtime
        self._placed: Counter[str] = Counter()  # hostname -> workers placed there
        self._primary = ""  # the node of the steering process
        self._receiver: QueueReader | None = None
        self._ringer = Ringer()  # rings the doorbells of crowded workers on this node (see crowded.py)
        self._turns_fd: int | None = None  # their lock on the result queue (made at start, closed at close)
        self._turns: str | None = None
        self._receiver_bell = new_bell()  # which they ring after each put
        self._relays: dict[str, RelayHandle] = {}  # hostname -> its relay, started with its first relayed worker
        self._relay_lock = threading.Lock()  # one relay per node, whichever thread starts its first worker
        self._relay_hosts: set[str] = set()  # the nodes that have, or will have, a relay
        self._maybe_idle = True  # a worker may hold no task (see may_take_now); set wherever a worker may become idle

    def accepts(self, pool: object) -> bool:
        """Whether ``pool`` is a Dragon pool."""
        return isinstance(pool, WorkerPool)

    # -- starting ------------------------------------------------------------------------------------------
    def start(self, pools: dict[str, Any], serving: dict[str, list[str]]) -> None:
        """Start every worker of these pools, and the receiver and the monitor."""
        self._serving = serving
        self._methods_blob = cloudpickle.dumps(self._methods)
        self._result_queue = Queue(maxsize=RESULT_QUEUE_SIZE)
        self._turns_fd, self._turns = new_turns()
        self._receiver = QueueReader(self._result_queue, crowded=False, bell=Doorbell(self._receiver_bell), bell_timeout_s=MAX_POLL_S, spin_s=SPIN_S)
        nodes = runtime_nodes()
        self._cores = {node.hostname: node.num_cpus for node in nodes}
        self._primary = nodes[0].hostname
        self._gpu_env_var = gpu_env_var(nodes)
        self._pools.update(pools)
        placed = {name: place_workers(name, pool, nodes) for name, pool in pools.items()}
        self._place([slot for slots in placed.values() for slot in slots])
        for name, slots in placed.items():
            logger.info(f"Pool {name!r}: {len(slots)} worker(s) on {sorted({s.hostname for s in slots})}, methods {serving[name]}")
            for slot in slots:
                self._start_worker(slot, generation=0)
        for target in (self._receive_loop, self._monitor_loop):
            thread = threading.Thread(target=target, name=f"task-server-{target.__name__.strip('_')}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def add_pool(self, name: str, pool: Any, methods: list[str]) -> int:
        """Start a pool's workers while the campaign runs; returns how many."""
        slots = place_workers(name, pool, runtime_nodes())
        with self.server.lock:
            self._pools[name] = pool
            self._place(slots)
        for slot in slots:
            self._start_worker(slot, generation=0)
        return len(slots)

    def _start_worker(self, slot: WorkerSlot, generation: int) -> None:
        pool = self._pools[slot.pool]
        relay = self._relay(slot.hostname) if self._relayed(slot) else None
        here = None if relay is None else on_node(slot.hostname)  # a relay's workers' queues are on their node
        tasks = Queue(maxsize=pool.max_prefetch + 4, policy=here)
        control = Queue(maxsize=CONTROL_QUEUE_SIZE, policy=here)
        crowding = self._crowding(slot.hostname, relay)
        process = Process(
            target=worker_main,
            args=(slot, generation, tasks, control, self._result_queue if relay is None else relay.results, self._methods_blob, crowding),
            env=slot.environment(pool, self._gpu_env_var),
            policy=slot.policy(),
        )
        process.start()
        if relay is None:
            worker = WorkerHandle(slot, generation, process, tasks, control, crowding.bell, crowding.cancel_bell)
        else:  # its relay rings its doorbell; before it is known to dispatch, so that the relay knows its queue first
            worker = WorkerHandle(slot, generation, process, tasks, control, relay=relay)
            relay.inbox.put(dumps(Attach(worker.key, tasks, crowding.bell)))
        with self.server.lock:
            self._workers[worker.key] = worker
            self._maybe_idle = True
            if self._receiver is not None:  # the receiver sleeps long only if every worker rings it
                everyone_rings = all(w.bell is not None for w in self._workers.values())
                self._receiver.bell_timeout_s = IDLE_POLL_S if everyone_rings else MAX_POLL_S

    def _relayed(self, slot: WorkerSlot) -> bool:
        return self._pools[slot.pool].relayed and slot.hostname != self._primary

    def _relay(self, hostname: str) -> RelayHandle:
        """The node's relay, started now if it is the node's first relayed worker (pools start workers from several
        threads; dispatch goes on meanwhile: a relay only joins ``_relays`` once started).
        """
        with self._relay_lock:
            relay = self._relays.get(hostname)
            if relay is None:
                here = on_node(hostname)
                inbox, results = Queue(maxsize=INBOX_SIZE, policy=here), Queue(maxsize=RESULT_QUEUE_SIZE, policy=here)
                crowding = self._crowding(hostname)
                if crowding.crowded:  # its node's workers ring it after each put, and it rings theirs
                    crowding = crowding._replace(receiver=new_bell())
                process = Process(target=relay_main, args=(inbox, results, self._result_queue, crowding),
                                  env={"PYTHONPATH": import_path(), RELAY_ENV: hostname}, policy=here)
                process.start()
                relay = RelayHandle(hostname, process, inbox, results, crowding.receiver)
                with self.server.lock:
                    self._relays[hostname] = relay
                    self._watched[process.puid] = relay.name
                logger.info(f"Relay of node {hostname} started (process {process.puid})")
            return relay

    def _place(self, slots: list[WorkerSlot]) -> None:
        """Count the workers (and relays) these slots put on each node, before any of them starts: every worker of a
        crowded node, the first ones too, then waits without spinning, and so does the receiver (see ``.reader``).
        """
        self._placed.update(slot.hostname for slot in slots)
        for slot in slots:
            if self._relayed(slot) and slot.hostname not in self._relay_hosts:
                self._relay_hosts.add(slot.hostname)
                self._placed[slot.hostname] += 1
        if self._receiver is not None:
            self._receiver.crowded = self._crowding(self._primary).crowded

    def _crowding(self, hostname: str, relay: RelayHandle | None = None) -> Crowding:
        """What a worker on this node is told: the processes that want a core there (its workers, a relay and, on the
        primary node, the steering process), its cores, and on a crowded node a doorbell: on the primary node with the
        result queue's lock and the receiver's doorbell, for a relayed worker with its relay's.
        """
        crowding = Crowding(self._placed[hostname] + (hostname == self._primary), self._cores.get(hostname, 1))
        if crowding.crowded and hostname == self._primary:
            return crowding._replace(bell=new_bell(), cancel_bell=new_bell(), turns=self._turns, receiver=self._receiver_bell)
        if crowding.crowded and relay is not None and relay.bell is not None:
            return crowding._replace(bell=new_bell(), receiver=relay.bell)
        return crowding

    def watch(self, puids: Iterable[int], what: str) -> None:
        """Join these processes too, and stop the campaign if one exits (see ``DragonTaskServer.watch``)."""
        with self.server.lock:
            self._watched.update(dict.fromkeys(puids, what))

    # -- dispatch ------------------------------------------------------------------------------------------
    def take(self, waiting: WaitingTasks, idle_only: bool) -> Send | None:
        """Hand waiting tasks, highest priority first, to workers with room (``idle_only``: to idle workers, one
        each); the batches are sent here, under the locks, so that a worker receives its tasks in the order they
        left the waiting queue.
        """
        sends: dict[WorkerKey, list[WaitingTask]] = defaultdict(list)
        left_idle = False  # an idle worker found no task it serves
        for pool_name, pool in self._pools.items():
            methods = self._serving[pool_name]
            # Round-robin, one task per worker per pass. Only workers that took a task stay for the next pass (an idle
            # worker is done with one), so a pass costs the workers that may still take tasks, not the whole pool: the
            # receiver dispatches after every result, and scanning 128 workers each time took a fifth of its time.
            workers: Iterable[WorkerHandle] = (w for w in self._workers.values() if w.slot.pool == pool_name
                                               and (not w.inflight if idle_only else len(w.inflight) <= pool.max_prefetch))
            while True:
                took: list[WorkerHandle] = []
                for worker in workers:
                    task = waiting.peek(methods)
                    if task is None:
                        left_idle = True
                        break
                    if self._has_room(worker, task):
                        waiting.pop(task.task_id)
                        self._assign(worker, task)
                        sends[worker.key].append(task)
                        took.append(worker)
                if idle_only or not took:
                    break
                workers = took
        if idle_only:  # every idle worker was looked at: those that took a task are idle no more
            self._maybe_idle = left_idle
        bells: list[str] = []
        handoffs: dict[str, list[Handoff]] = defaultdict(list)  # relay's node -> what it hands its workers
        for key, tasks in sends.items():
            worker = self._workers[key]
            payload = dumps([TaskMessage(t.task_id, t.method, t.inputs, self.server.result_rule(t), layout_of(t)) for t in tasks])
            if worker.relay is not None:
                handoffs[worker.relay.hostname].append(Handoff(key, payload))
                continue
            worker.tasks.put(payload)
            if worker.bell is not None:
                bells.append(worker.bell)
        for hostname, batch in handoffs.items():
            self._relays[hostname].inbox.put(dumps(batch))
        # Rung once the locks are released: waking a sleeping worker costs the ringing thread 74 us on this VM
        # (results/wakeup_cost.md), and the result receiver waits for these locks.
        return functools.partial(self._ringer.ring, *bells) if bells else None

    def may_take_now(self) -> bool:
        """Whether a worker may hold no task (cleared by a dispatch to idle workers that left none idle)."""
        return self._maybe_idle

    def _has_room(self, worker: WorkerHandle, task: WaitingTask) -> bool:
        if not worker.inflight:
            return True
        pool = self._pools[worker.slot.pool]
        estimate = self.server.estimate(task.method)
        current = next(iter(worker.inflight.values()))[1]  # the task it runs now (tasks run in the order sent)
        beyond = worker.queued_work - current + (estimate if estimate is not None else float("inf"))
        return len(worker.inflight) <= pool.max_prefetch and beyond <= pool.prefetch_seconds

    def _assign(self, worker: WorkerHandle, task: WaitingTask) -> None:
        mark_dispatched(task)
        estimate = self.server.estimate(task.method) or 0.0
        worker.inflight[task.task_id] = (task, estimate)
        worker.queued_work += estimate
        self._owner[task.task_id] = worker.key

    def cancel(self, task_ids: Iterable[str]) -> list[WaitingTask]:
        """Drop these tasks at once (a result that still comes is ignored) and tell their workers to stop them."""
        stopped: list[WaitingTask] = []
        notices: dict[WorkerKey, list[str]] = defaultdict(list)
        for task_id in task_ids:
            key = self._owner.pop(task_id, None)
            if key is not None:
                stopped.append(self._workers[key].release(task_id))
                self._maybe_idle = True
                notices[key].append(task_id)
        for key, ids in notices.items():
            worker = self._workers[key]
            post(worker.control, dumps(ids), key, then=self._ring_later(worker.cancel_bell))
        return stopped

    # -- state ---------------------------------------------------------------------------------------------
    def status(self) -> dict[str, tuple[int, int]]:
        """Per pool: workers holding a task, and live workers."""
        status = {}
        for name in self._pools:
            workers = [w for w in self._workers.values() if w.slot.pool == name]
            status[name] = (sum(1 for w in workers if w.inflight), len(workers))
        return status

    def worker_count(self, pool: str | None = None, ready: bool = False) -> int:
        """Live workers, of one pool or of all (``ready``: only those that have started and said so)."""
        with self.server.lock:
            return sum(1 for w in self._workers.values() if (pool is None or w.slot.pool == pool) and (not ready or w.info is not None))

    # -- results -------------------------------------------------------------------------------------------
    def _receive_loop(self) -> None:
        """Take every message already in the result queue at once, so that a burst of results (workers whose tasks
        end together) is completed as one batch: one results.jsonl write, one delivery, one dispatch.
        """
        assert self._receiver is not None
        while True:
            messages = [self._receiver.get(), *self._receiver.take_ready(RECEIVE_BATCH)]  # never a timed get: that spins (dragonhpc 0.15)
            received = time.time()
            results: list[Results] = []
            for message in _unpacked(messages):
                if isinstance(message, Results):
                    results.append(message)
                    continue
                self._on_results(results, received)  # in order: a worker's results come before the notice of its exit
                results = []
                if isinstance(message, StopReceiver):
                    return
                self._on_message(message, received)
            self._on_results(results, received)

    def _on_message(self, message: object, received: float) -> None:
        try:
            match message:
                case Partial():
                    self._on_partial(message, received)
                case Ready(key, info):
                    self._on_ready(key, info)
                case Exited(key, exit_code):
                    self._on_worker_exit(key, exit_code)
                case StartFailed(key, trace):
                    logger.error(f"Worker {key} of pool {key.pool!r} could not start:\n{trace}")
                    with self.server.lock:
                        self._start_failures.setdefault(key.pool, trace.strip().splitlines()[-1])
        except Exception:
            logger.exception(f"Could not process a {type(message).__name__} message from a worker")

    def _on_ready(self, key: WorkerKey, info: dict[str, Any]) -> None:
        with self.server.lock:
            worker = self._workers.get(key)
            if worker is not None:
                worker.info = WorkerInformation(**info)
                self._startup_failures[key.pool] = 0
        logger.debug(f"Worker {key} ready on {info['hostname']}")

    def _on_results(self, messages: list[Results], received: float) -> None:
        if not messages:
            return
        try:
            self._complete(messages, received)
        except Exception:
            logger.exception(f"Could not complete the results of {len(messages)} message(s) from workers")

    def _complete(self, messages: list[Results], received: float) -> None:
        completed: list[Result] = []
        retries: list[WaitingTask] = []
        try:
            with self.server.lock:
                for message in messages:
                    worker = self._workers.get(message.key)
                    for record in message.records:
                        if worker is None or self._owner.get(record.task_id) != message.key:
                            continue  # the task was cancelled, or given up for lost and re-run elsewhere
                        del self._owner[record.task_id]
                        task = worker.release(record.task_id)
                        self._maybe_idle = True
                        result = self.server.complete(task, record, worker.information(), message.sent, received)
                        if result.success or not self.server.may_retry(task):
                            completed.append(result)
                        else:
                            retries.append(task)
        finally:  # what was completed is delivered, whatever went wrong after it
            self.server.finish(completed)
            for task in retries:
                self.server.queues.requeue(task)
        self.server.dispatch()

    def _on_partial(self, message: Partial, received: float) -> None:
        """An item a streaming generator yielded: a copy of the task's result with ``complete=False``."""
        with self.server.lock:
            worker = self._workers.get(message.key)
            if worker is None or self._owner.get(message.task_id) != message.key:
                return  # cancelled, or given up for lost
            task = worker.inflight[message.task_id][0]
            info = worker.info
        final = task.result
        partial = final.model_copy(update={
            "timestamp": final.timestamp.model_copy(update={"result_sent": message.sent, "result_received": received}),
            "time": final.time.model_copy(), "message_sizes": {**final.message_sizes, "value": len(message.item)},
            "worker_info": info, "success": True, "complete": False,
        })
        try:
            partial.value = loads(message.item)
        except Exception:
            logger.exception(f"Could not unpickle an intermediate result of task {message.task_id} ({task.method}); dropped")
            return
        self.server.queues.deliver([partial])

    # -- worker processes ----------------------------------------------------------------------------------
    def _monitor_loop(self) -> None:
        """Report worker exits through the result queue, behind every result the worker sent before dying.

        Ready workers of this node are watched through pidfds (see ``.exits``); the rest, and the processes
        the campaign watches, through Dragon's ``multi_join``, which also gives every exit code.
        """
        reported: set[int] = set()
        here = socket.gethostname()
        local = LocalExits()
        try:
            while not self._closing.is_set():
                with self.server.lock:
                    by_puid = {w.process.puid: w for w in self._workers.values() if w.process.puid not in reported}
                    watched = {puid: what for puid, what in self._watched.items() if puid not in reported}
                    pids = {w.process.puid: w.info.pid for w in self._workers.values()
                            if w.info is not None and w.info.pid and w.info.hostname == here and w.process.puid in by_puid}
                if not by_puid and not watched:
                    time.sleep(0.05)
                    continue
                local.watch(pids)
                joined = [puid for puid in (*by_puid, *watched) if puid not in local]
                ended = local.wait(0.0 if joined else MONITOR_PERIOD_S)
                if not joined and not ended:
                    continue
                try:
                    exited, _ = multi_join([*joined, *ended], timeout=MONITOR_PERIOD_S)
                except Exception:
                    logger.exception("Could not poll the worker processes")
                    time.sleep(0.5)
                    continue
                for puid, exit_code in exited or []:
                    reported.add(puid)
                    if puid in by_puid:
                        self._post_exit(by_puid[puid], exit_code)
                    elif puid in watched:
                        self._relay_lost(puid)
                        if not self.server.stopping:
                            self.server.stop_campaign(f"{watched[puid]}: process {puid} exited with code {exit_code}")
        finally:
            local.close()

    def _on_worker_exit(self, key: WorkerKey, exit_code: int | None) -> None:
        lost_results: list[Result] = []
        retries: list[WaitingTask] = []
        with self.server.lock:
            worker = self._workers.pop(key, None)
            if worker is None:
                return
            stopping = self.server.stopping
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
            if stopping and self.server.queues.suspending:  # kept for the checkpoint, not failed
                suspended, interrupted = interrupted, []
            for task in interrupted:
                result = failed(task, FailureInformation.from_exception(WorkerLost(reason)))
                if self.server.may_retry(task):
                    retries.append(task)
                else:
                    lost_results.append(result)
            if worker.info is None and not stopping:
                self._startup_failures[worker.slot.pool] += 1
            give_up = self._startup_failures[worker.slot.pool] >= STARTUP_FAILURES_BEFORE_GIVING_UP
            if give_up:
                broken = self._start_failures.setdefault(worker.slot.pool, f"workers exit at start-up (last exit code {exit_code})")
            self._dead_queues += [worker.tasks, worker.control]  # destroyed at close, by a deadline: never in the receiver
        self.server.queues.set_aside(suspended)  # outside the server's lock: the queues' lock comes first
        self.server.finish(lost_results, final=not stopping)  # a shutdown cut them short: run again if resumed
        for task in retries:
            self.server.queues.requeue(task)
        if stopping:
            return
        if give_up:
            self.server.pool_broken(worker.slot.pool, broken)
            return
        threading.Thread(target=self._replace_worker, args=(worker,), daemon=True).start()

    def _replace_worker(self, worker: WorkerHandle) -> None:
        self._start_worker(worker.slot, worker.generation + 1)
        self.server.dispatch()

    # -- shutdown ------------------------------------------------------------------------------------------
    def stop(self, grace_ends: float, hurry: threading.Event) -> None:
        """Workers get the stop message and until ``grace_ends`` (none once ``hurry`` is set) to finish their
        tasks; then SIGTERM, which a worker turns into an exit at its next Python instruction, so that it
        leaves any Dragon call (a DDict operation, a queue put) whole instead of dying inside it; then, after
        ``TERMINATE_S``, SIGKILL; a worker whose exit the runtime has not reported ``KILL_REPORT_S`` later is
        given up for lost.
        """
        with self.server.lock:
            workers = list(self._workers.values())
        stop_message = dumps(None)
        relayed: dict[str, list[Handoff]] = defaultdict(list)  # through the relay, behind the tasks it still carries
        for worker in workers:
            if worker.relay is not None and not worker.relay.lost:
                relayed[worker.relay.hostname].append(Handoff(worker.key, stop_message))
            else:
                post(worker.tasks, stop_message, worker.key, timeout=1, then=self._ring_later(worker.bell))
        for hostname, handoffs in relayed.items():
            relay = self._relays[hostname]
            post(relay.inbox, dumps(handoffs), relay.name, timeout=1)
        self._wait_for_workers(grace_ends, until=hurry)
        for signal_name, ask, wait_s in (("SIGTERM", Process.terminate, TERMINATE_S), ("SIGKILL", Process.kill, KILL_REPORT_S)):
            with self.server.lock:
                stragglers = list(self._workers.values())
            for worker in stragglers:
                logger.warning(f"Worker {worker.key} did not stop{'' if hurry.is_set() else ' in its grace time'}; sending {signal_name}")
                threading.Thread(target=signal_process, args=(worker.process, ask, f"Worker {worker.key}"), daemon=True).start()  # a request can hang
            self._wait_for_workers(time.monotonic() + wait_s)
        with self.server.lock:
            unreported = [w.key for w in self._workers.values()]
        for key in unreported:
            logger.error(f"The runtime never reported the exit of killed worker {key}; giving it up")
            self._post_result(Exited(key, None))
        self._wait_for_workers(time.monotonic() + RECEIVER_S)  # the receiver takes them out

    def close(self) -> None:
        """Stop the relays, the receiver and the monitor, then destroy every Dragon queue, each by a deadline."""
        self._stop_relays()
        self._post_result(StopReceiver())
        for thread in self._threads:
            if thread.name.endswith("receive_loop"):
                thread.join(RECEIVER_S)
                if thread.is_alive():
                    logger.error(f"The result receiver did not stop within {RECEIVER_S:g} s; abandoning it")
        self._closing.set()
        with self.server.lock:
            channels = [*self._dead_queues, *(q for w in self._workers.values() for q in (w.tasks, w.control)),
                        *(q for r in self._relays.values() for q in (r.inbox, r.results)), self._result_queue]
            self._dead_queues.clear()
            self._owner.clear()
        destroy_queues(channels)
        self._ringer.close()
        if self._turns_fd is not None:
            os.close(self._turns_fd)

    def _stop_relays(self) -> None:
        """After the workers: each relay forwards what its node's workers sent and exits (killed if it has not within
        ``RECEIVER_S``).
        """
        relays = [relay for relay in self._relays.values() if not relay.lost]
        for relay in relays:
            post(relay.inbox, dumps(None), relay.name, timeout=1)
            post(relay.results, dumps(StopReceiver()), relay.name, timeout=1)
        deadline = time.monotonic() + RECEIVER_S
        for relay in relays:
            try:
                exit_code = relay.process.join(max(0.0, deadline - time.monotonic()))
            except Exception:
                logger.debug(f"Could not join {relay.name}", exc_info=True)
                exit_code = None
            if exit_code is None:
                logger.error(f"The relay of node {relay.hostname} did not stop within {RECEIVER_S:g} s; killing it")
                threading.Thread(target=signal_process, args=(relay.process, Process.kill, relay.name), daemon=True).start()

    def _post_exit(self, worker: WorkerHandle, exit_code: int | None) -> None:
        """Tell the receiver a worker exited, behind every message it sent (through its relay, if it has one)."""
        if worker.relay is None or worker.relay.lost:
            self._post_result(Exited(worker.key, exit_code))
        else:  # from a thread of its own: a relay that dies meanwhile leaves its queue full
            post(worker.relay.results, dumps(Exited(worker.key, exit_code)), worker.key)

    def _relay_lost(self, puid: int) -> None:
        """A relay's process exited (the campaign stops, unless it was stopping already): its workers are reached
        without it from now on.
        """
        with self.server.lock:
            for relay in self._relays.values():
                if relay.process.puid == puid:
                    relay.lost = True

    def _post_result(self, message: Exited | StopReceiver) -> None:
        """Put a message of the steering process's own on the result queue, and wake the receiver."""
        assert self._result_queue is not None
        self._result_queue.put(dumps(message))
        self._ringer.ring(self._receiver_bell)

    def _ring_later(self, bell: str | None) -> Callable[[], None] | None:
        """What rings a worker's doorbell once a message is posted (None for a worker without one)."""
        return None if bell is None else functools.partial(self._ringer.ring, bell)

    def _wait_for_workers(self, deadline: float, until: threading.Event | None = None) -> None:
        while self.worker_count() and time.monotonic() < deadline and not (until is not None and until.is_set()):
            time.sleep(0.05)


def _unpacked(messages: list[bytes]) -> Iterable[Any]:
    """The messages of the result queue, each relay's batch in its place."""
    for data in messages:
        message = loads(data)
        if isinstance(message, Relayed):
            yield from map(loads, message.messages)
        else:
            yield message
