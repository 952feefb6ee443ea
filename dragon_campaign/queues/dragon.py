"""The thinker's side of the task queues: submit with topics and priorities, re-prioritize, cancel, get results.

The object lives in the steering process, beside the ``DragonTaskServer`` that
drains it. Tasks wait here, in priority order, until a worker has room; they reach workers and come back
over Dragon queues (managed-memory channels), never over pipes or Redis. Keeping the waiting tasks in this
process is what makes ``update_priority`` and ``cancel`` exact: a task already inside a channel could be
neither reordered nor withdrawn.

Every task is registered (and counted in ``active_count``) before it can be dispatched, so a result that
comes back at once always finds its record, and every task ends in exactly one of three ways: its result
is taken with ``get_result``, it is cancelled, or the server shuts down and delivers a failed result for it.
``wait_until_done`` therefore cannot hang on a lost task.

A campaign that stops to be resumed later (``send_kill_signal(suspend=True)``) is the exception: the
server sets its unfinished tasks aside instead of failing them; ``suspended()`` hands them, with the
results nobody took yet, to the checkpoint, and ``resume()`` puts both back in the next job.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from dragon_campaign.exceptions import KillSignalException, TimeoutException
from dragon_campaign.journal.events import TaskEvents, input_digest, requeue_info
from dragon_campaign.models import ResourceRequirements, Result, WorkerInformation, fill
from dragon_campaign.queues.proxying import ProxyRule, proxy_inputs
from dragon_campaign.queues.waiting import WaitingTask, WaitingTasks
from dragon_campaign.wire import PICKLE_PROTOCOL


class TaskSink(Protocol):
    """What the queues need from a task server: the methods it knows, a nudge when work arrives, a way to
    stop running tasks (it returns those it stopped), and the pools a thinker may look at and grow.
    """

    def method_names(self) -> Sequence[str]:
        """The methods the server runs (send_inputs refuses others)."""

    def tasks_waiting(self) -> None:
        """New tasks wait: hand them to idle workers."""

    def cancel_running(self, task_ids: Iterable[str]) -> list[WaitingTask]:
        """Stop these tasks where they run; returns those stopped."""

    def worker_count(self, pool: str | None = None) -> int:
        """Live workers, of one pool or of all."""

    def add_pool(self, name: str, pool: Any, methods: Iterable[str]) -> int:
        """Start a pool while the campaign runs; returns how many workers it starts."""


@dataclass(frozen=True)
class TopicStatus:
    """Tasks of one topic: waiting for a worker, handed out and not finished, finished (result delivered)."""

    waiting: int
    running: int
    finished: int


class DragonQueues:
    """Task queues with topics, priorities, re-prioritization and cancellation (Colmena's ``ColmenaQueues`` API)."""

    def __init__(
        self,
        topics: Iterable[str] = (),
        keep_inputs: bool = True,
        proxystore_name: str | dict[str, str] | None = None,
        proxystore_threshold: int | dict[str, int] | None = None,
        serialization_method: str = "pickle",
        proxystore_evict: bool | dict[str, bool] = False,
    ) -> None:
        """
        Args:
            topics: Names of the topics results are sorted into; ``default`` is always present.
            keep_inputs: Default for ``send_inputs(keep_inputs=...)``: keep the inputs in the results.
            proxystore_name: Name of a registered ProxyStore store, for every topic or per topic.
            proxystore_threshold: Inputs and results above this many bytes travel as proxies through that
                topic's store (for every topic or per topic).
            serialization_method: Accepted for Colmena's sake (``"pickle"`` or ``"json"``); tasks always
                travel pickled (protocol 5) here, since nothing between thinker and workers needs text.
            proxystore_evict: Evict each proxy of these topics (inputs and results) from its store when it
                is first resolved, so a campaign whose values are consumed once keeps only what is in flight
                in memory (for every topic or per topic; default: keep them until the store is cleared).
        """
        if str(getattr(serialization_method, "value", serialization_method)).lower() not in ("pickle", "json"):
            raise ValueError(f"Unknown serialization_method {serialization_method!r}; Colmena's are 'pickle' and 'json'")
        ordered = list(dict.fromkeys(["default", *topics]))  # the order given, for status lines
        self.topics: set[str] = set(ordered)  # a set, as in Colmena
        self.keep_inputs = keep_inputs
        self._lock = threading.RLock()
        self._results_ready = threading.Condition(self._lock)
        self._results: dict[str, deque[Result]] = {topic: deque() for topic in ordered}
        self._arrival: deque[str] = deque()  # topic of each undelivered result, in arrival order
        self._final_waiting = 0  # undelivered results that end their task (not streamed intermediate ones)
        self._active: set[str] = set()
        self._all_done = threading.Event()
        self._all_done.set()
        self._waiting = WaitingTasks()
        self._counts: dict[str, Counter[str]] = {topic: Counter() for topic in ordered}  # submitted, finished, cancelled
        self._killed = threading.Event()
        self._suspend = False
        self._set_aside: list[WaitingTask] = []
        self._sink: TaskSink | None = None
        self.events = TaskEvents()  # what the task server's journal writes (dragon_campaign.journal)
        self._memo: dict[tuple[str, bytes], deque[Result]] = {}  # finished tasks of an earlier job that answer submissions
        self._unacked: dict[int, str] = {}  # thread -> the result it took last, until that thread calls the queues again
        self.proxy_rules: dict[str, ProxyRule] = self._proxy_rules(proxystore_name, proxystore_threshold, proxystore_evict)

    def _proxy_rules(self, names: str | dict[str, str] | None, thresholds: int | dict[str, int] | None,
                     evict: bool | dict[str, bool]) -> dict[str, ProxyRule]:
        if names is None:
            if evict:
                raise ValueError("proxystore_evict needs a proxystore_name")
            return {}
        if thresholds is None:
            raise ValueError("proxystore_name needs a proxystore_threshold")
        names = {topic: names for topic in self.topics} if isinstance(names, str) else dict(names)
        thresholds = {topic: thresholds for topic in names} if isinstance(thresholds, int) else dict(thresholds)
        evict = {topic: evict for topic in names} if isinstance(evict, bool) else dict(evict)
        for topic in (*names, *thresholds, *evict):
            self._check_topic(topic)
        missing = set(names) - set(thresholds)
        if missing:
            raise ValueError(f"No proxystore_threshold for topics {sorted(missing)}")
        unproxied = {topic for topic, on in evict.items() if on} - set(names)
        if unproxied:
            raise ValueError(f"proxystore_evict names topics without a proxystore_name: {sorted(unproxied)}")
        return {topic: ProxyRule(name, thresholds[topic], evict.get(topic, False)) for topic, name in names.items()}

    # -- submitting -------------------------------------------------------------------------------------
    def send_inputs(
        self,
        *input_args: Any,
        method: str,
        input_kwargs: dict[str, Any] | None = None,
        topic: str = "default",
        keep_inputs: bool | None = None,
        resources: ResourceRequirements | dict[str, Any] | None = None,
        task_info: dict[str, Any] | None = None,
        max_retries: int = 0,
        priority: float = 0.0,
    ) -> str:
        """Submit a task and return its id. Higher ``priority`` starts earlier; ties run in submission order."""
        if self._killed.is_set():
            raise KillSignalException("The queues received the kill signal: no more tasks are accepted")
        self._check_topic(topic)
        self._check_method(method)
        input_kwargs = dict(input_kwargs or {})
        if isinstance(resources, dict):
            resources = ResourceRequirements(**resources)
        keep = self.keep_inputs if keep_inputs is None else keep_inputs
        result = Result(
            inputs=(tuple(input_args), input_kwargs) if keep else ((), {}),
            method=method,
            topic=topic,
            keep_inputs=keep,
            task_info=dict(task_info or {}),
            resources=resources or ResourceRequirements(),
            max_retries=max_retries,
            priority=float(priority),
        )
        start = time.perf_counter()
        rule = self.proxy_rules.get(topic)
        if rule is not None:
            input_args, input_kwargs = proxy_inputs(input_args, input_kwargs, rule)
        try:
            inputs = pickle.dumps((input_args, input_kwargs), protocol=PICKLE_PROTOCOL)
        except Exception as exc:
            raise TypeError(f"The inputs of a {method!r} task cannot be pickled: {exc!r}") from exc
        result.time.serialize_inputs = time.perf_counter() - start
        result.message_sizes["inputs"] = len(inputs)
        events = self.events
        # what memoization matches, with the method; the journal's writer hashes what it gets (most inputs)
        digest = input_digest(inputs) if self._memo or len(inputs) > events.inputs_limit else None
        with self._lock:
            self._unacked.pop(threading.get_ident(), None)
            self._active.add(result.task_id)
            self._counts[topic]["submitted"] += 1
            self._all_done.clear()
            answers = self._memo.get((method, digest)) if self._memo and digest is not None else None
            source = answers.popleft() if answers else None
            if source is not None:
                _answered_by(result, source)
                events.answered(result.task_id, topic, method, result.priority, digest, keep, result.timestamp.created, source.task_id)  # type: ignore[arg-type]
            else:
                self._waiting.push(WaitingTask(result.task_id, method, result.priority, result, inputs))
                if events.enabled:
                    info = None if resources is None and not task_info and not max_retries else requeue_info(result)
                    events.submitted(result.task_id, topic, method, result.priority, digest, keep, result.timestamp.created, info, inputs)
        if source is not None:
            self.deliver([result])
        elif self._sink is not None:
            self._sink.tasks_waiting()
        return result.task_id

    def update_priority(self, task_ids: Sequence[str], priorities: Sequence[float]) -> list[str]:
        """Change the priority of tasks still waiting; returns the ids changed (started tasks are skipped)."""
        if len(task_ids) != len(priorities):
            raise ValueError(f"{len(task_ids)} task ids but {len(priorities)} priorities")
        with self._lock:
            self._unacked.pop(threading.get_ident(), None)
            updated = self._waiting.update_priority(task_ids, priorities)
            if updated:
                new = dict(zip(task_ids, priorities, strict=True))
                self.events.reprioritized(updated, [float(new[task_id]) for task_id in updated])
            return updated

    def cancel(self, task_ids: Iterable[str]) -> list[str]:
        """Withdraw tasks: waiting ones never run, running ones are stopped (their worker goes on with the next
        task). Cancelled tasks produce no result (intermediate results already streamed stay). Returns the ids
        cancelled; tasks that finished already, and tasks running on an ExecutorPool, are not.
        """
        task_ids = list(task_ids)
        with self._lock:
            self._unacked.pop(threading.get_ident(), None)
            removed = self._waiting.remove(task_ids)
            running = set(task_ids) & self._active - {task.task_id for task in removed}
            if running and self._sink is not None:
                removed += self._sink.cancel_running(running)
            for task in removed:
                self._counts[task.result.topic]["cancelled"] += 1
            self._forget([task.task_id for task in removed])
            if removed:
                self.events.cancelled([task.task_id for task in removed])
        return [task.task_id for task in removed]

    # -- receiving --------------------------------------------------------------------------------------
    def get_result(self, topic: str | None = "default", timeout: float | None = None) -> Result:
        """Wait for the next result of a topic (``topic=None``: of any topic), oldest first.

        Raises:
            TimeoutException: if none arrived within ``timeout`` seconds.
            KillSignalException: the campaign was suspended for a checkpoint and no result is left to take
                (its tasks were set aside for the next job).
        """
        if topic is not None:
            self._check_topic(topic)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._results_ready:
            thread = threading.get_ident()
            self._unacked.pop(thread, None)
            while True:
                found = self._pop_result(topic)
                if found is not None:
                    if found.complete is not False:
                        self._forget([found.task_id])
                        self._unacked[thread] = found.task_id
                    return found
                if self._suspend and self._in_flight() == 0:
                    raise KillSignalException("The campaign was suspended for a checkpoint: no more results will come in this job")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutException(f"No result for topic {topic!r} within {timeout} s")
                self._results_ready.wait(remaining)

    def flush(self) -> int:
        """Discard every result that has arrived and not been taken, in every topic (Colmena's ``flush``);
        returns how many. Their tasks count as done, so ``active_count`` and ``wait_until_done`` move on.
        """
        with self._results_ready:
            flushed = [result for buffer in self._results.values() for result in buffer]
            for buffer in self._results.values():
                buffer.clear()
            self._arrival.clear()
            self._final_waiting = 0
            self._forget([result.task_id for result in flushed if result.complete is not False])
        return len(flushed)

    def iterate_results(self, topic: str | None = None, timeout: float | None = None) -> Iterator[Result]:
        """Yield results as they complete until no task is active (``as_completed`` style).

        Raises:
            TimeoutException: if ``timeout`` seconds pass without a result while tasks are active.
        """
        while self.active_count > 0:
            yield self.get_result(topic=topic, timeout=timeout)

    @property
    def active_count(self) -> int:
        """Tasks submitted whose result has not been taken yet (cancelled tasks excluded)."""
        with self._lock:
            return len(self._active)

    @property
    def waiting_count(self) -> int:
        """Tasks not yet handed to a worker."""
        with self._lock:
            return len(self._waiting)

    def topic_status(self) -> dict[str, TopicStatus]:
        """Per topic: tasks waiting, running (handed to a worker or an executor) and finished (cancelled ones excluded)."""
        with self._lock:
            waiting = Counter(task.result.topic for task in self._waiting)
            status = {}
            for topic, counts in self._counts.items():
                running = counts["submitted"] - counts["cancelled"] - counts["suspended"] - counts["finished"] - waiting[topic]
                status[topic] = TopicStatus(waiting[topic], running, counts["finished"])
            return status

    def wait_until_done(self, timeout: float | None = None) -> bool:
        """Block until every submitted task has been received or cancelled; False on timeout."""
        return self._all_done.wait(timeout)

    def send_kill_signal(self, suspend: bool = False) -> None:
        """Tell the task server to shut down; tasks that have not finished come back as failed results.

        Args:
            suspend: Set unfinished tasks aside for a checkpoint instead (see ``suspended``).
        """
        with self._lock:
            self._suspend = self._suspend or suspend
        self._killed.set()
        if self._sink is not None:
            self._sink.tasks_waiting()

    @property
    def suspending(self) -> bool:
        """The kill signal asked for unfinished tasks to be set aside for the next job."""
        return self._suspend

    def suspended(self) -> tuple[list[WaitingTask], list[Result]]:
        """After a suspending shutdown: the tasks set aside (waiting or interrupted, with their priorities)
        and the results that arrived but were never taken; both leave these queues.
        """
        with self._results_ready:
            tasks, self._set_aside = self._set_aside, []
            results = [self._results[topic].popleft() for topic in self._arrival]
            results = [result for result in results if result.complete is not False]  # its task runs again, streams again
            self._arrival.clear()
            self._final_waiting = 0
            self._forget([result.task_id for result in results])
            self._results_ready.notify_all()
        return tasks, results

    def resume(self, tasks: Iterable[WaitingTask], results: Iterable[Result]) -> None:
        """Put the tasks and untaken results of a checkpoint back (before the thinker starts).

        Tasks keep their ids and priorities and run again from the start; results are delivered again
        without being logged again (they are in the results log already).
        """
        tasks, results = list(tasks), list(results)
        with self._results_ready:
            for task in tasks:
                topic = task.result.topic
                self._check_topic(topic)
                self._counts[topic]["submitted"] += 1
                self._active.add(task.task_id)
                self._waiting.push(task)
            for result in results:
                self._check_topic(result.topic)
                self._counts[result.topic]["submitted"] += 1
                self._active.add(result.task_id)
            if self._active:
                self._all_done.clear()
        self.deliver(results)
        if self._sink is not None and tasks:
            self._sink.tasks_waiting()

    def in_flight(self) -> tuple[int, frozenset[str]]:
        """For a snapshot of the thinker: the last event's number, and the tasks the thinker still waits for
        (results not taken, and each agent thread's last result until that thread calls the queues again:
        it may not have recorded it yet).
        """
        with self._lock:
            return self.events.last_seq, frozenset(self._active) | frozenset(self._unacked.values())

    def memoize(self, finished: dict[tuple[str, bytes], deque[Result]]) -> None:
        """Answer submissions from these finished tasks of an earlier job, by method and inputs (before the thinker starts)."""
        with self._lock:
            self._memo = {key: deque(results) for key, results in finished.items() if results}

    @property
    def killed(self) -> threading.Event:
        """Set once the kill signal was sent."""
        return self._killed

    # -- pools, for thinkers that steer them ---------------------------------------------------------------
    def worker_count(self, pool: str | None = None) -> int:
        """Live workers of the task server behind these queues, of one pool or of all."""
        return self._server().worker_count(pool)

    def add_pool(self, name: str, pool: Any, methods: Iterable[str]) -> int:
        """Start a pool while the campaign runs (a ``WorkerPool`` or an ``ExecutorPool``); it takes tasks of
        these methods from these queues at once. Returns how many Dragon workers it starts.
        """
        return self._server().add_pool(name, pool, methods)

    def _server(self) -> TaskSink:
        if self._sink is None:
            raise RuntimeError("No task server drains these queues yet")
        return self._sink

    # -- the task server's side --------------------------------------------------------------------------
    def attach_server(self, sink: TaskSink) -> None:
        """Bind the task server that drains these queues (one per queues object)."""
        if self._sink is not None and self._sink is not sink:
            raise RuntimeError("These queues already feed a task server")
        self._sink = sink

    @contextmanager
    def waiting_tasks(self) -> Iterator[WaitingTasks]:
        """The waiting tasks, locked for the duration of the block (the dispatcher takes tasks here)."""
        with self._lock:
            yield self._waiting

    def set_aside(self, tasks: Iterable[WaitingTask]) -> None:
        """Keep unfinished tasks for a checkpoint (suspending shutdown) instead of failing them."""
        with self._results_ready:
            tasks = list(tasks)
            self._set_aside.extend(tasks)
            for task in tasks:
                self._counts[task.result.topic]["suspended"] += 1
            self._forget([task.task_id for task in tasks])
            self._results_ready.notify_all()

    def requeue(self, task: WaitingTask) -> None:
        """Put a task back in line (a retry after a failure or a lost worker)."""
        with self._lock:
            self._waiting.push(task)
        if self._sink is not None:
            self._sink.tasks_waiting()

    def deliver(self, results: Iterable[Result]) -> None:
        """Hand completed results to ``get_result`` callers."""
        with self._results_ready:
            for result in results:
                self._results[result.topic].append(result)
                self._arrival.append(result.topic)
                if result.complete is not False:
                    self._counts[result.topic]["finished"] += 1
                    self._final_waiting += 1
            self._results_ready.notify_all()

    # -- helpers ----------------------------------------------------------------------------------------
    def _pop_result(self, topic: str | None) -> Result | None:
        if topic is None:
            if not self._arrival:
                return None
            topic = self._arrival[0]
        buffer = self._results[topic]
        if not buffer:
            return None
        self._arrival.remove(topic)  # the first occurrence is this topic's oldest result
        result = buffer.popleft()
        if result.complete is not False:
            self._final_waiting -= 1
        return result

    def _in_flight(self) -> int:
        """Tasks whose result has not arrived (active tasks minus results waiting to be taken)."""
        return len(self._active) - self._final_waiting

    def _forget(self, task_ids: Iterable[str]) -> None:
        self._active.difference_update(task_ids)
        if not self._active:
            self._all_done.set()

    def _check_topic(self, topic: str) -> None:
        if topic not in self._results:
            raise ValueError(f"Unknown topic {topic!r}; the queues have topics {sorted(self.topics)}")

    def _check_method(self, method: str) -> None:
        if self._sink is not None and method not in self._sink.method_names():
            raise ValueError(f"Unknown method {method!r}; the task server runs {list(self._sink.method_names())}")


def _answered_by(result: Result, source: Result) -> None:
    """Complete a new task with what an identical task of an earlier job returned (memoization)."""
    info = source.worker_info.model_dump() if source.worker_info is not None else {}
    fill(result, value=source.value, success=source.success, failure_info=source.failure_info, complete=True,
         worker_info=WorkerInformation(**{**info, "answered_from": source.task_id}), timestamp=source.timestamp,
         time=source.time, mpi_ranks=source.mpi_ranks, retries=source.retries,
         message_sizes={**result.message_sizes, **{k: v for k, v in source.message_sizes.items() if k != "inputs"}})
