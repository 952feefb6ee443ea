"""BaseThinker and its agents against a real task server."""

from __future__ import annotations

import threading
import time

import tasks

from dragon_campaign import (
    BaseThinker,
    DragonQueues,
    DragonTaskServer,
    ResourceCounter,
    Result,
    WorkerPool,
    agent,
    event_responder,
    result_processor,
    task_submitter,
)


class NoOpFlood(BaseThinker):
    """Send N no-op tasks at once and count the results."""

    def __init__(self, queues: DragonQueues, n_tasks: int) -> None:
        super().__init__(queues)
        self.n_tasks = n_tasks
        self.received: list[object] = []

    @agent
    def submit(self) -> None:
        for i in range(self.n_tasks):
            self.queues.send_inputs(i, method="noop")

    @result_processor
    def collect(self, result: Result) -> None:
        assert result.success, result.failure_info
        self.received.append(result.value)


def test_500_noops_through_4_workers_exit_every_time(tmp_path):
    for run in range(20):
        queues = DragonQueues()
        server = DragonTaskServer([tasks.noop], queues, pools={"cpu": WorkerPool(workers=4)}, run_dir=tmp_path / f"run{run}")
        thinker = NoOpFlood(queues, 500)
        with server:
            thinker.start()
            thinker.join(timeout=60)
            assert not thinker.is_alive(), f"run {run}: the thinker did not exit"
        assert sorted(thinker.received) == list(range(500)), f"run {run}: results missing"
        assert queues.active_count == 0
        with open(tmp_path / f"run{run}" / "results.jsonl") as fp:
            assert sum(1 for _ in fp) == 500


class SubmitterThinker(BaseThinker):
    """A task_submitter bounded by 2 slots; results release them; stops after 10 tasks."""

    def __init__(self, queues: DragonQueues) -> None:
        super().__init__(queues, ResourceCounter(2, ["sim"]))
        self.rec.reallocate(None, "sim", 2)
        self.submitted = 0
        self.max_in_flight = 0
        self.values: list[float] = []

    @task_submitter(task_type="sim")
    def submit(self) -> None:
        if self.submitted == 10:
            self.done.set()
            return
        self.submitted += 1
        self.max_in_flight = max(self.max_in_flight, self.queues.active_count)
        self.queues.send_inputs(self.submitted, 0.05, method="sleep_then")

    @result_processor
    def receive(self, result: Result) -> None:
        self.values.append(result.value)
        self.rec.release("sim", 1)


def test_task_submitter_respects_slots(serve):
    queues, _ = serve([tasks.sleep_then])
    thinker = SubmitterThinker(queues)
    thinker.start()
    thinker.join(timeout=60)
    assert not thinker.is_alive()
    assert sorted(thinker.values) == list(range(1, 11))
    assert thinker.max_in_flight <= 2


class FailingAgentThinker(BaseThinker):
    """One agent submits a long task then raises; the result processor must not wait for that task."""

    @agent
    def explode(self) -> None:
        self.queues.send_inputs("slow", 20.0, method="sleep_then")
        raise RuntimeError("agent broke")

    @result_processor
    def receive(self, result: Result) -> None:
        pass


def test_exception_in_agent_stops_the_thinker(serve):
    queues, server = serve([tasks.sleep_then])
    server.shutdown_grace = 0.5
    thinker = FailingAgentThinker(queues)
    start = time.monotonic()
    thinker.start()
    thinker.join(timeout=10)
    assert not thinker.is_alive(), "the thinker hung after an agent raised"
    assert time.monotonic() - start < 5
    assert [repr(e) for e in thinker.exceptions] == ["RuntimeError('agent broke')"]


class EventThinker(BaseThinker):
    """An event responder that borrows one slot from 'sim' for 'ml' while it runs."""

    def __init__(self, queues: DragonQueues) -> None:
        super().__init__(queues, ResourceCounter(2, ["sim", "ml"]))
        self.rec.reallocate(None, "sim", 2)
        self.retrain = threading.Event()
        self.borrowed = -1
        self.responses = 0

    @agent(startup=True)
    def trigger(self) -> None:
        self.retrain.set()

    @event_responder(event_name="retrain", reallocate_resources=True, gather_from="sim", gather_to="ml",
                     disperse_to="sim", max_slots=1)
    def respond(self) -> None:
        deadline = time.monotonic() + 5
        while self.rec.allocated_slots("ml") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.borrowed = self.rec.allocated_slots("ml")
        self.responses += 1

    @agent
    def finish(self) -> None:
        deadline = time.monotonic() + 10
        while self.responses == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # let the responder hand the slot back


def test_event_responder_reallocates_and_returns_slots():
    thinker = EventThinker(DragonQueues())
    thinker.start()
    thinker.join(timeout=30)
    assert not thinker.is_alive()
    assert thinker.borrowed == 1 and thinker.responses == 1
    assert thinker.rec.allocated_slots("ml") == 0 and thinker.rec.allocated_slots("sim") == 2
    assert not thinker.exceptions
