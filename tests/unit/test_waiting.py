"""Priority order, re-prioritization and cancellation of waiting tasks."""

import random
import time

from dragon_campaign.models import Result
from dragon_campaign.queues.waiting import WaitingTask, WaitingTasks


def drain(waiting: WaitingTasks, methods: list[str]) -> list[str]:
    order = []
    while (task := waiting.peek(methods)) is not None:
        order.append(waiting.pop(task.task_id).task_id)
    return order


def test_higher_priority_first_then_fifo():
    waiting = WaitingTasks()
    for task_id, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1)]:
        waiting.push(WaitingTask(task_id, "m", priority, Result(method="m")))
    assert drain(waiting, ["m"]) == ["b", "d", "a", "c", "e"]


def test_update_priority_and_cancel():
    waiting = WaitingTasks()
    for i in range(5):
        waiting.push(WaitingTask(str(i), "m", 0, Result(method="m")))
    assert waiting.update_priority(["3", "missing"], [10, 1]) == ["3"]
    assert [t.task_id for t in waiting.remove(["1", "missing"])] == ["1"]
    assert drain(waiting, ["m"]) == ["3", "0", "2", "4"]
    assert len(waiting) == 0


def test_best_head_across_methods():
    waiting = WaitingTasks()
    waiting.push(WaitingTask("low", "a", 1, Result(method="m")))
    waiting.push(WaitingTask("high", "b", 2, Result(method="m")))
    waiting.push(WaitingTask("other", "c", 9, Result(method="m")))
    assert drain(waiting, ["a", "b"]) == ["high", "low"]
    assert waiting.ids_of(["c"]) == ["other"]


def test_reprioritizing_700_tasks_is_fast():
    waiting = WaitingTasks()
    ids = [str(i) for i in range(750)]
    for task_id in ids:
        waiting.push(WaitingTask(task_id, "m", random.random(), Result(method="m")))
    start = time.perf_counter()
    waiting.update_priority(ids[:700], [random.random() for _ in range(700)])
    elapsed = time.perf_counter() - start
    assert elapsed < 0.05, f"update_priority of 700 tasks took {elapsed * 1e3:.1f} ms"
    priorities = [waiting.pop(t.task_id).priority for t in iter(lambda: waiting.peek(["m"]), None)]
    assert priorities == sorted(priorities, reverse=True)
