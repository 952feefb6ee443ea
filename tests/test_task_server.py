"""Queues and task server under the real Dragon runtime: results, failures, priorities, cancellation, workers."""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import time

import pytest
import tasks

from dragon_campaign import KillSignalException, TimeoutException, WorkerPool, read_results


def test_round_trip_records_worker_and_timings(serve, run_dir):
    queues, server = serve([tasks.add], topics=("math",))
    task_id = queues.send_inputs(1, method="add", input_kwargs={"b": 2}, topic="math", task_info={"tag": 7})
    result = queues.get_result(topic="math", timeout=30)
    assert (result.task_id, result.success, result.value, result.task_info) == (task_id, True, 3, {"tag": 7})
    assert result.args == (1,) and result.kwargs == {"b": 2}
    assert result.worker_info.hostname == socket.gethostname()
    assert result.worker_info.pool == "cpu" and result.worker_info.gpu is None
    stamps = result.timestamp
    chain = [stamps.created, stamps.dispatched, stamps.input_received, stamps.compute_started,
             stamps.compute_ended, stamps.result_sent, stamps.result_received]
    assert all(not math.isnan(t) for t in chain) and chain == sorted(chain)
    spans = result.time
    assert all(s >= 0 for s in (spans.serialize_inputs, spans.deserialize_inputs, spans.running,
                                spans.serialize_results, spans.deserialize_results))
    server.stop(timeout=30)
    logged = read_results(run_dir / "results.jsonl")
    assert [r.task_id for r in logged] == [task_id] and logged[0].value == 3


def test_what_lived_before_the_server_started_is_frozen_out_of_the_collector_until_it_stops(serve):
    import gc

    before = gc.get_freeze_count()
    queues, server = serve([tasks.noop])
    assert gc.get_freeze_count() > before  # a full collection no longer walks the imports
    queues.send_inputs(1, method="noop")
    assert queues.get_result(timeout=30).value == 1
    assert server.stop(timeout=30)
    assert gc.get_freeze_count() == 0


def test_results_log_holds_values_json_cannot(serve, run_dir):
    """Raw bytes (a store reference's descriptor, say) and arrays are logged, not lost."""
    queues, server = serve([tasks.noop])
    ids = [queues.send_inputs(value, method="noop") for value in (b"\xff\x00raw", {"refs": [b"\x80"]}, tasks.Blob(b"\x81"))]
    values = [queues.get_result(timeout=30).value for _ in ids]
    assert b"\xff\x00raw" in values
    server.stop(timeout=30)
    logged = read_results(run_dir / "results.jsonl")
    assert sorted(r.task_id for r in logged) == sorted(ids)


def test_get_result_any_topic_and_timeout(serve):
    queues, _ = serve([tasks.noop], topics=("a", "b"))
    queues.send_inputs("x", method="noop", topic="a")
    queues.send_inputs("y", method="noop", topic="b")
    values = {queues.get_result(topic=None, timeout=30).value for _ in range(2)}
    assert values == {"x", "y"}
    with pytest.raises(TimeoutException):
        queues.get_result(topic="a", timeout=0.2)
    assert queues.active_count == 0 and queues.wait_until_done(timeout=1)


def test_bad_input_is_rejected_clearly(serve):
    queues, _ = serve([tasks.noop])
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        queues.send_inputs(1, method="nope")
    with pytest.raises(ValueError, match="Unknown topic 'nope'"):
        queues.send_inputs(1, method="noop", topic="nope")
    with pytest.raises(TypeError, match="cannot be pickled"):
        queues.send_inputs(lambda: 1, method="noop")
    assert queues.active_count == 0


def test_failures_carry_exception_and_traceback_and_are_retried(serve):
    queues, _ = serve([tasks.fail, tasks.unpicklable_value])
    queues.send_inputs("boom", method="fail", max_retries=2)
    result = queues.get_result(timeout=30)
    assert result.success is False and result.retries == 2
    assert result.failure_info.exception == "ValueError('boom')"
    assert "in fail" in result.failure_info.traceback and "ValueError: boom" in result.failure_info.traceback
    queues.send_inputs(method="unpicklable_value")
    result = queues.get_result(timeout=30)
    assert result.success is False and "cannot be pickled" in result.failure_info.exception


def test_priorities_order_execution_while_worker_busy(serve):
    queues, _ = serve([tasks.noop, tasks.sleep_then], pool=WorkerPool(workers=1))
    queues.send_inputs(None, method="noop")
    queues.get_result(timeout=30)  # the worker is up and noop's duration is known
    queues.send_inputs("busy", 1.5, method="sleep_then")
    assert queues.waiting_count == 0, "the busy task should have gone to the idle worker at once"
    rng = random.Random(42)
    priority = {queues.send_inputs(i, method="noop", priority=p): p for i, p in enumerate(rng.uniform(0, 10) for _ in range(50))}
    ids = list(priority)
    raised = rng.sample(ids, 5)
    assert queues.update_priority(raised, [100.0 + k for k in range(5)]) == raised
    priority.update({task_id: 100.0 + k for k, task_id in enumerate(raised)})
    order = [queues.get_result(timeout=60) for _ in range(51)]
    assert order[0].value == "busy"
    observed = [r.task_id for r in order[1:]]
    assert observed[:5] == raised[::-1], "the five raised tasks must run first, highest first"
    assert observed == sorted(ids, key=lambda t: (-priority[t], ids.index(t)))
    assert [r.priority for r in order[1:]] == sorted(priority.values(), reverse=True)
    starts = [r.timestamp.compute_started for r in order[1:]]
    assert starts == sorted(starts)


def test_cancelled_tasks_never_run(serve, run_dir):
    """Waiting tasks are withdrawn, the one handed to the worker is stopped; none gives a result."""
    queues, server = serve([tasks.sleep_then, tasks.noop], pool=WorkerPool(workers=1))
    running = queues.send_inputs("busy", 30.0, method="sleep_then")
    waiting = [queues.send_inputs(i, method="noop") for i in range(10)]
    cancelled = queues.cancel(waiting[::2] + [running])
    assert cancelled == [*waiting[::2], running]
    received = [queues.get_result(timeout=20).task_id for _ in range(5)]
    assert set(received) == set(waiting[1::2])
    with pytest.raises(TimeoutException):
        queues.get_result(timeout=0.5)
    assert queues.active_count == 0
    server.stop(timeout=30)
    assert not set(cancelled) & {r.task_id for r in read_results(run_dir / "results.jsonl")}


def test_a_submission_reaches_a_worker_freed_by_a_result_or_a_cancellation_at_once(serve):
    """A submission while every worker is busy does not look for an idle one; whatever frees a worker must then
    hand it the next task (a result does, the task waiting) or let the next submission find it (a cancellation)."""
    queues, _ = serve([tasks.sleep_then, tasks.noop], pool=WorkerPool(workers=1, max_prefetch=0))
    first = queues.send_inputs("first", 1.0, method="sleep_then")
    behind = queues.send_inputs("behind", method="noop")  # the worker is busy: this one waits for first's result
    done = [queues.get_result(timeout=60) for _ in range(2)]
    assert [r.task_id for r in done] == [first, behind]
    assert done[1].timestamp.dispatched >= done[0].timestamp.result_received - 0.01
    long = queues.send_inputs("long", 600.0, method="sleep_then")
    time.sleep(0.5)  # it runs
    assert queues.cancel([long]) == [long]
    start = time.monotonic()
    after = queues.send_inputs("after", method="noop")  # the worker is free again, and nothing else will happen
    result = queues.get_result(timeout=60)
    assert result.task_id == after and time.monotonic() - start < 30
    assert result.timestamp.dispatched - result.timestamp.created < 1.0, "the submission did not find the freed worker"


def test_prefetch_seconds_is_the_work_a_busy_worker_holds_beyond_its_running_task(serve):
    """With 1 s tasks and prefetch_seconds=1.5 a worker holds the task it runs and one more, not two more."""
    queues, _ = serve([tasks.sleep_then], pool=WorkerPool(workers=1, prefetch_seconds=1.5))
    queues.send_inputs("warm-up", 1.0, method="sleep_then")
    queues.get_result(timeout=60)  # the method's running average is now about 1 s
    for name in "abcd":
        queues.send_inputs(name, 1.0, method="sleep_then")
    a, b, c, d = (queues.get_result(timeout=60) for _ in range(4))
    assert [r.value for r in (a, b, c, d)] == list("abcd")
    assert c.timestamp.dispatched < b.timestamp.compute_started, "c was not sent to wait behind b"
    assert d.timestamp.dispatched > b.timestamp.compute_ended, "d was sent while b and c were still ahead of it"


def test_workers_of_a_crowded_node_hear_cancellations_at_once_and_go_on(serve, run_dir):
    """More workers than cores: each sleeps on a doorbell for cancellations instead of looking at its control queue;
    cancelling the tasks they all run stops every one of them, and the same workers take the next tasks.
    """
    workers = (os.cpu_count() or 1) + 1  # with the steering process, more processes want a core than there are
    queues, server = serve([tasks.sleep_then], pool=WorkerPool(workers=workers))
    running = [queues.send_inputs(i, 300.0, method="sleep_then") for i in range(workers)]
    deadline = time.monotonic() + 120
    while (server.worker_count(ready=True) < workers or queues.topic_status()["default"].running < workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # handed out: give the workers time to start them
    assert sorted(queues.cancel(running)) == sorted(running)
    started = time.monotonic()
    for i in range(workers):
        queues.send_inputs(i, 1.0, method="sleep_then")
    results = [queues.get_result(timeout=60) for _ in range(workers)]
    assert all(r.success for r in results)
    assert {r.worker_info.worker for r in results} == set(range(workers)), "a worker still ran its cancelled task"
    assert time.monotonic() - started < 30
    assert server.worker_count() == workers  # stopped tasks, not replaced workers
    server.stop(timeout=30)
    assert not set(running) & {r.task_id for r in read_results(run_dir / "results.jsonl")}


def test_dead_worker_is_replaced_and_its_task_reported(serve, tmp_path):
    queues, server = serve([tasks.die, tasks.whoami, tasks.die_once], pool=WorkerPool(workers=1))
    queues.send_inputs(method="whoami")
    first_pid = queues.get_result(timeout=30).value
    queues.send_inputs(-9, method="die")
    lost = queues.get_result(timeout=60)
    assert lost.success is False and "WorkerLost" in lost.failure_info.exception
    assert "exited with code" in lost.failure_info.exception
    queues.send_inputs(method="whoami")
    replacement = queues.get_result(timeout=60)
    assert replacement.success and replacement.value != first_pid
    queues.send_inputs(str(tmp_path / "marker"), method="die_once", max_retries=1)
    retried = queues.get_result(timeout=60)
    assert (retried.success, retried.value, retried.retries) == (True, "survived", 1)
    assert server.worker_count() == 1


def test_gpu_pool_falls_back_to_cpu_workers(serve, caplog):
    caplog.set_level(logging.WARNING, logger="dragon_campaign.server.pool")
    queues, server = serve([tasks.environment], gpu=WorkerPool(gpus=True, cpu_fallback_workers=2))
    assert server.worker_count("gpu") == 2
    queues.send_inputs("CUDA_VISIBLE_DEVICES", method="environment")
    result = queues.get_result(timeout=30)
    assert result.success and result.value == "" and result.worker_info.gpu is None
    assert any("has no GPU" in message for message in caplog.messages)


def test_methods_are_routed_to_their_pools(run_dir):
    from dragon_campaign import DragonQueues, DragonTaskServer

    queues = DragonQueues()
    server = DragonTaskServer(
        [tasks.noop, (tasks.add, {"pool": "second"}), (tasks.whoami, {"pool": ["cpu", "second"], "name": "pid"})],
        queues,
        pools={"cpu": WorkerPool(workers=1), "second": WorkerPool(workers=1)},
        run_dir=run_dir,
    )
    with pytest.raises(ValueError, match="bound to pool 'missing'"):
        DragonTaskServer([(tasks.noop, {"pool": "missing"})], DragonQueues(), run_dir=run_dir)
    with server:
        queues.send_inputs(1, method="noop")
        queues.send_inputs(1, 2, method="add")
        queues.send_inputs(method="pid")
        results = {r.method: r for r in (queues.get_result(timeout=30) for _ in range(3))}
    assert results["noop"].worker_info.pool == "cpu"
    assert results["add"].worker_info.pool == "second" and results["add"].value == 3
    assert results["pid"].success


def test_kill_signal_fails_unfinished_tasks_and_stops_workers(run_dir):
    from dragon_campaign import DragonQueues, DragonTaskServer

    queues = DragonQueues()
    server = DragonTaskServer([tasks.sleep_then], queues, pools={"cpu": WorkerPool(workers=1)}, run_dir=run_dir, shutdown_grace=0.5)
    server.start()
    ids = [queues.send_inputs(i, 5.0, method="sleep_then") for i in range(3)]
    time.sleep(0.5)
    pids_before = server.worker_count()
    queues.send_kill_signal()
    with pytest.raises(KillSignalException):
        queues.send_inputs(0, 0, method="sleep_then")
    assert server.join(timeout=30)
    results = [queues.get_result(timeout=5) for _ in ids]
    assert {r.task_id for r in results} == set(ids) and not any(r.success for r in results)
    assert queues.wait_until_done(timeout=1)
    assert pids_before == 1 and server.worker_count() == 0
    assert {r.task_id for r in read_results(run_dir / "results.jsonl")} == set(ids)


def test_pool_added_mid_run_takes_tasks_from_the_same_queue(serve):
    """A thinker grows the pools through its queues (it never holds the server)."""
    queues, server = serve([tasks.sleep_then], pool=WorkerPool(workers=1))
    ids = [queues.send_inputs(i, 0.3, method="sleep_then") for i in range(8)]
    assert queues.add_pool("extra", WorkerPool(workers=1), methods=["sleep_then"]) == 1
    results = [queues.get_result(timeout=60) for _ in ids]
    assert {r.worker_info.pool for r in results} == {"pool", "extra"}
    assert queues.worker_count("extra") == 1 and queues.worker_count() == server.worker_count() == 2
    with pytest.raises(ValueError, match="already exists"):
        queues.add_pool("extra", WorkerPool(workers=1), methods=["sleep_then"])


def test_order_cancellation_and_exactly_once_at_full_speed(run_dir):
    """20,000 no-op tasks drained as fast as four workers take them, while another thread cancels and reprioritizes
    tasks at full speed: every task is delivered once or cancelled, never both; no cancelled task reaches
    results.jsonl; tasks nobody touched after the start leave the waiting queue in exact priority order.
    """
    import threading

    from dragon_campaign import DragonQueues, DragonTaskServer

    rng = random.Random(19)
    queues = DragonQueues()
    ids = [queues.send_inputs(i, method="noop", priority=rng.choice([0.0, 1.0, 2.5, 7.0])) for i in range(20_000)]
    index = {task_id: i for i, task_id in enumerate(ids)}
    cancelled = set(queues.cancel(rng.sample(ids, 1_000)))
    assert len(cancelled) == 1_000, "every task still waits before the server starts"
    raised = rng.sample(sorted(set(ids) - cancelled, key=index.get), 1_000)
    assert len(queues.update_priority(raised, [rng.uniform(0, 10) for _ in raised])) == 1_000
    touched: set[str] = set()  # tasks cancelled or reprioritized while the queue drains

    def meddle() -> None:
        candidates = sorted(set(ids) - cancelled, key=index.get)
        for _ in range(20):
            chunk = rng.sample(candidates, 100)
            touched.update(chunk)
            cancelled.update(queues.cancel(chunk[:50]))
            queues.update_priority(chunk[50:], [rng.uniform(0, 10) for _ in range(50)])
            time.sleep(0.01)

    server = DragonTaskServer([tasks.noop], queues, pools={"cpu": WorkerPool(workers=4)}, run_dir=run_dir).start()
    try:
        delivered = [queues.get_result(timeout=60)]  # the workers have started: the queue drains while the meddler works
        meddler = threading.Thread(target=meddle)
        meddler.start()
        while True:
            meddling = meddler.is_alive()
            if not meddling and len(delivered) + len(cancelled) >= len(ids):
                break
            try:
                delivered.append(queues.get_result(timeout=0.5 if meddling else 60))
            except TimeoutException:
                assert meddling, f"{len(ids) - len(delivered) - len(cancelled)} task(s) neither delivered nor cancelled"
        with pytest.raises(TimeoutException):
            queues.get_result(timeout=0.5)
    finally:
        assert server.stop(timeout=60)

    got = [r.task_id for r in delivered]
    assert len(got) == len(set(got)), "a result was delivered twice"
    assert not set(got) & cancelled, "a cancelled task was delivered"
    assert set(got) | cancelled == set(ids)
    assert all(r.success and r.value == index[r.task_id] for r in delivered)
    logged = [r.task_id for r in read_results(run_dir / "results.jsonl")]
    assert sorted(logged) == sorted(got)
    untouched = sorted((r for r in delivered if r.task_id not in touched), key=lambda r: (-r.priority, index[r.task_id]))
    left = [r.timestamp.dispatched for r in untouched]
    assert len(untouched) > 15_000 and left == sorted(left), "tasks left the waiting queue out of priority order"
