"""Colmena 0.7 behaviours a ported campaign relies on, against the real runtime (written from Colmena's
documentation and source: colmena/models/methods.py, colmena/thinker/__init__.py, colmena/exceptions.py)."""

from __future__ import annotations

import math
import threading
import time

import pytest
import tasks

from dragon_campaign import BaseThinker, DragonQueues, KillSignalException, TimeoutException, WorkerPool, agent, read_results
from dragon_campaign.launch import proc_stat


def test_a_generator_method_returns_what_it_yielded(serve):
    queues, _ = serve([tasks.count_up])
    queues.send_inputs(4, method="count_up")
    result = queues.get_result(timeout=30)
    assert result.success, result.failure_info
    assert result.value == [0, 1, 4, 9]


def test_a_function_taking_resources_gets_the_tasks_requirements(serve):
    queues, _ = serve([tasks.my_resources])
    queues.send_inputs("asked", method="my_resources", resources={"cpu_processes": 1, "cpu_threads": 4})
    queues.send_inputs("default", method="my_resources")
    values = sorted(queues.get_result(timeout=30).value for _ in range(2))
    assert values == [("asked", 1, 1, 4), ("default", 1, 1, 1)]


def test_results_carry_colmenas_fields(serve):
    queues, _ = serve([tasks.add])
    queues.send_inputs(1, 2, method="add")
    result = queues.get_result(timeout=30)
    assert result.complete is True and result.success
    stamps = result.timestamp
    assert not math.isnan(stamps.start_task_submission) and stamps.start_task_submission == stamps.dispatched
    assert stamps.task_received == stamps.result_received and stamps.task_received >= stamps.start_task_submission
    assert result.message_sizes["inputs"] > 0 and result.message_sizes["value"] > 0
    dumped = result.model_dump()
    assert {"start_task_submission", "task_received"} <= set(dumped["timestamp"])


def test_topics_are_a_set_and_flush_discards_waiting_results(serve):
    queues, _ = serve([tasks.noop], topics=("simulate", "train"))
    assert isinstance(queues.topics, set) and queues.topics == {"default", "simulate", "train"}
    for i in range(3):
        queues.send_inputs(i, method="noop", topic="simulate")
    deadline = time.monotonic() + 30
    while queues.topic_status()["simulate"].finished < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queues.active_count == 3
    assert queues.flush() == 3
    assert queues.active_count == 0 and queues.wait_until_done(timeout=1)
    with pytest.raises(TimeoutException):
        queues.get_result(topic="simulate", timeout=0.2)


class LocalDetails(BaseThinker):
    """Two agents, each keeping its own state in ``local_details`` set up by ``prepare_agent``."""

    def __init__(self, queues: DragonQueues) -> None:
        super().__init__(queue=queues)  # Colmena's keyword
        self.seen: dict[str, list[int]] = {}
        self.barrier = threading.Barrier(2)

    def prepare_agent(self) -> None:
        self.local_details.visits = []

    @agent(startup=True)
    def first(self) -> None:
        self._visit(1)

    @agent
    def second(self) -> None:
        self._visit(2)

    def _visit(self, mark: int) -> None:
        self.local_details.visits.append(mark)
        self.barrier.wait(timeout=10)  # both agents hold their state at once
        self.local_details.visits.append(mark * 10)
        self.seen[self.agent_name] = list(self.local_details.visits)


def test_local_details_are_per_agent_and_queue_keyword_is_accepted(serve):
    queues, _ = serve([tasks.noop])
    thinker = LocalDetails(queues)
    assert thinker.queues is queues
    thinker.start()
    thinker.join(timeout=30)
    assert not thinker.is_alive() and not thinker.exceptions
    assert thinker.seen == {"first": [1, 10], "second": [2, 20]}


def test_the_thinker_needs_its_queues_exactly_once(serve):
    queues, _ = serve([tasks.noop])
    with pytest.raises(TypeError, match="exactly once"):
        BaseThinker()
    with pytest.raises(TypeError, match="exactly once"):
        BaseThinker(queues, queue=queues)


class SwallowsErrors(BaseThinker):
    """An agent that guards its work with ``except Exception`` while waiting on the queue."""

    def __init__(self, queues: DragonQueues) -> None:
        super().__init__(queues)
        self.swallowed: list[BaseException] = []

    @agent
    def wait_for_a_result(self) -> None:
        try:
            self.queues.get_result(timeout=0.2)
        except Exception as exc:  # must not catch a queue timeout (Colmena: TimeoutException is a BaseException)
            self.swallowed.append(exc)


def test_except_exception_in_an_agent_does_not_catch_a_queue_timeout(serve):
    queues, _ = serve([tasks.noop])
    thinker = SwallowsErrors(queues)
    thinker.start()
    thinker.join(timeout=30)
    assert not thinker.swallowed
    assert len(thinker.exceptions) == 1 and isinstance(thinker.exceptions[0], TimeoutException)
    assert not issubclass(TimeoutException, Exception) and not issubclass(KillSignalException, Exception)


def test_an_executables_output_is_parsed_into_the_value(serve):
    queues, _ = serve([tasks.Square()])
    queues.send_inputs(1.5, method="square")
    result = queues.get_result(timeout=30)
    assert result.success, result.failure_info
    assert result.value == 2.25


def test_a_failing_executable_reports_its_exit_status_and_stderr(serve):
    failing = tasks.shell_program("failing", 'echo "reading $1"; echo "no such input: $1" >&2; exit 7')
    queues, _ = serve([failing, tasks.noop])
    queues.send_inputs("molecule.xyz", method="failing")
    result = queues.get_result(timeout=30)
    assert result.success is False and result.complete is True
    assert "exited with status 7" in result.failure_info.exception
    assert "no such input: molecule.xyz" in result.failure_info.exception
    queues.send_inputs("still serving", method="noop")  # the worker goes on
    assert queues.get_result(timeout=30).value == "still serving"


def test_an_executable_past_its_timeout_is_killed_with_its_children(serve, tmp_path):
    pid_file = tmp_path / "child.pid"
    hanging = tasks.shell_program("hanging", 'sleep 300 & echo $! > "$1"; wait', timeout=2)
    queues, _ = serve([hanging])
    queues.send_inputs(str(pid_file), method="hanging")
    result = queues.get_result(timeout=60)
    assert result.success is False and "ran past its 2 s limit" in result.failure_info.exception
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the program's background child outlived the task"


def test_an_mpi_executable_runs_over_the_tasks_ranks(serve):
    queues, _ = serve([tasks.RankReport()])
    queues.send_inputs(method="rank_report", resources={"cpu_processes": 2})
    result = queues.get_result(timeout=120)
    assert result.success, result.failure_info
    assert result.value == [(0, 2), (1, 2)]


def _alive(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def test_streamed_results_arrive_in_order_before_the_final_one(serve, run_dir):
    queues, server = serve([tasks.streaming_ticks()])
    task_id = queues.send_inputs(3, 0.2, method="ticks")
    received = [queues.get_result(timeout=30) for _ in range(4)]
    assert [r.task_id for r in received] == [task_id] * 4
    assert [(r.complete, r.value) for r in received] == [(False, 0), (False, 1), (False, 2), (True, 3)]
    assert all(r.success for r in received) and queues.active_count == 0
    sent = [r.timestamp.result_received for r in received]
    assert sent == sorted(sent)
    server.stop(timeout=30)
    logged = read_results(run_dir / "results.jsonl")
    assert [(r.task_id, r.complete, r.value) for r in logged] == [(task_id, True, 3)]


def test_a_generator_without_streaming_keeps_colmenas_value_shape(serve):
    from dragon_campaign.methods import PythonGeneratorMethod

    queues, _ = serve([PythonGeneratorMethod(tasks.ticks, store_return_value=True)])
    queues.send_inputs(2, 0.0, method="ticks")
    assert queues.get_result(timeout=30).value == ([0, 1], 2)


def test_cancelling_a_running_task_stops_it_and_the_worker_goes_on(serve, run_dir):
    queues, server = serve([tasks.sleep_then, tasks.whoami], cpu=WorkerPool(workers=1))
    queues.send_inputs(method="whoami")
    worker = queues.get_result(timeout=60).value
    task_id = queues.send_inputs("never", 120, method="sleep_then")
    _wait_until_running(queues, "default")
    assert queues.cancel([task_id]) == [task_id]
    assert queues.active_count == 0 and queues.wait_until_done(timeout=1)
    started = time.monotonic()
    queues.send_inputs(method="whoami")
    assert queues.get_result(timeout=60).value == worker  # the same worker, not a replacement
    assert time.monotonic() - started < 30
    assert queues.cancel([task_id]) == []  # gone already
    server.stop(timeout=30)
    assert task_id not in {r.task_id for r in read_results(run_dir / "results.jsonl")}


def test_a_thinker_stops_a_streaming_task_early_after_its_intermediate_results(serve):
    queues, _ = serve([tasks.streaming_ticks(), tasks.noop], cpu=WorkerPool(workers=1))
    task_id = queues.send_inputs(-1, 0.1, method="ticks")  # yields forever
    seen = [queues.get_result(timeout=30).value for _ in range(3)]
    assert seen == [0, 1, 2]
    assert queues.cancel([task_id]) == [task_id]
    queues.send_inputs("next", method="noop")
    results = [queues.get_result(timeout=30)]
    while results[-1].task_id == task_id:  # items streamed before the cancel took effect
        results.append(queues.get_result(timeout=30))
    assert results[-1].value == "next" and all(r.complete is False for r in results[:-1])


def test_cancelling_a_running_executable_kills_its_program(serve, tmp_path):
    pid_file = tmp_path / "child.pid"
    hanging = tasks.shell_program("hanging", 'sleep 300 & echo $! > "$1"; wait')
    queues, _ = serve([hanging])
    task_id = queues.send_inputs(str(pid_file), method="hanging")
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queues.cancel([task_id]) == [task_id]
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def _wait_until_running(queues: DragonQueues, topic: str) -> None:
    deadline = time.monotonic() + 30
    while queues.topic_status()[topic].running < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # handed out: give the worker time to start it
