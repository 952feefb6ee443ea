"""Under one Dragon runtime over two nodes (bash run-multinode-tests.sh: an emulated cluster, see
tests/multinode/cluster/): pools spread over the nodes, GPU pools fall back on each, a relayed pool reaches
the other node's workers through its relay with priorities, cancellation, exactly-once delivery and worker
loss as without one, the store has managers on both and moves arrays between them byte for byte, and a
campaign gives the results it gives on one node."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import socket
import time

import numpy as np
import pytest
import tasks
from conftest import run_in_process

from dragon_campaign import WorkerPool, read_results

MB = 2**20


@pytest.fixture(scope="module")
def hosts() -> list[str]:
    from dragon.native.machine import Node, System

    names = sorted(Node(h).hostname for h in System().nodes)
    assert len(names) == 2, f"this tier runs on two nodes, the runtime has {names}"
    return names


def test_cpu_pool_spreads_workers_over_both_nodes(serve, hosts):
    queues, server = serve([tasks.whoami], cpu=WorkerPool(workers=4))
    assert server.worker_count() == 4
    for _ in range(16):
        queues.send_inputs(method="whoami")
    results = [queues.get_result(timeout=120) for _ in range(16)]
    assert all(r.success for r in results)
    ran_on = {r.worker_info.hostname for r in results}
    assert ran_on == set(hosts), "results record the node of each task, and both nodes ran tasks"
    assert {r.worker_info.worker for r in results} == {0, 1, 2, 3}


def test_gpu_pool_falls_back_to_a_cpu_worker_on_each_node(serve, hosts):
    queues, server = serve([tasks.whoami], gpu=WorkerPool(gpus=True, cpu_fallback_workers=1))
    assert server.worker_count() == 2
    for _ in range(8):
        queues.send_inputs(method="whoami")
    results = [queues.get_result(timeout=120) for _ in range(8)]
    assert {r.worker_info.hostname for r in results} == set(hosts)
    assert all(r.worker_info.gpu is None for r in results)


@pytest.mark.parametrize("workers", [2, 6], ids=["a-worker-per-node", "crowded-nodes"])
def test_a_relayed_pool_keeps_priorities_and_delivers_each_task_once(serve, hosts, run_dir, caplog, workers):
    """Workers on both nodes; the other node's are reached through its relay (on crowded nodes, 3 workers and the relay
    on 2 cores, the relay and its workers ring each other's doorbells). Tasks of unknown duration go to idle workers
    only, so each worker starts its tasks highest priority first; 2,000 no-op tasks in batches each come back once,
    from both nodes.
    """
    caplog.set_level(logging.INFO, logger="dragon_campaign.server")
    queues, server = serve([tasks.noop, tasks.sleep_then], cpu=WorkerPool(workers=workers, relayed=True, prefetch_seconds=0))
    other = next(host for host in hosts if host != socket.gethostname())  # the steering process runs here
    assert [m.split(" (")[0] for m in caplog.messages if m.startswith("Relay of node")] == [f"Relay of node {other} started"]
    deadline = time.monotonic() + 120
    while server.worker_count(ready=True) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
    for i in range(workers):
        queues.send_inputs(i, 2.0, method="sleep_then")
    rng = random.Random(7)
    priority = {queues.send_inputs(i, 0.1, method="sleep_then", priority=rng.uniform(0, 10)): None for i in range(20 * workers)}
    results = [queues.get_result(timeout=120) for _ in range(21 * workers)]
    assert all(r.success for r in results)
    assert {r.worker_info.hostname for r in results if r.task_id in priority} == set(hosts)
    for worker in range(workers):
        mine = sorted((r for r in results if r.worker_info.worker == worker and r.task_id in priority), key=lambda r: r.timestamp.compute_started)
        assert [r.priority for r in mine] == sorted((r.priority for r in mine), reverse=True), f"worker {worker} ran tasks out of priority order"

    ids = [queues.send_inputs(i, method="noop") for i in range(2000)]
    delivered = [queues.get_result(timeout=120) for _ in ids]
    assert sorted(r.task_id for r in delivered) == sorted(ids)
    assert {r.worker_info.hostname for r in delivered} == set(hosts)
    assert all(r.value == ids.index(r.task_id) for r in delivered[:50])
    assert server.stop(timeout=60)
    logged = [r.task_id for r in read_results(run_dir / "results.jsonl")]
    assert sorted(logged) == sorted([*ids, *priority, *(r.task_id for r in results if r.task_id not in priority)])
    assert not [m for m in caplog.messages if m.startswith("The relay of node")], "the relay had to be killed"


def test_a_relayed_worker_is_cancelled_and_replaced_through_its_relay(serve, hosts, run_dir):
    """The other node's worker stops a cancelled task at once and takes the next; killed by its task, it is replaced,
    its task reported lost (its exit comes through the relay, behind its results), and its successor runs tasks.
    """
    queues, server = serve([tasks.sleep_then, tasks.die_on], cpu=WorkerPool(workers=2, relayed=True))
    running = [queues.send_inputs(i, 300.0, method="sleep_then") for i in range(2)]
    deadline = time.monotonic() + 120
    while queues.topic_status()["default"].running < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # handed out: give the workers time to start them
    assert sorted(queues.cancel(running)) == sorted(running)
    started = time.monotonic()
    for i in range(2):
        queues.send_inputs(i, 0.5, method="sleep_then")
    after = [queues.get_result(timeout=60) for _ in range(2)]
    assert all(r.success for r in after) and {r.worker_info.hostname for r in after} == set(hosts)
    assert time.monotonic() - started < 30, "a worker still ran its cancelled task"

    here = socket.gethostname()  # the steering process's node: the other one's worker is relayed
    other = next(host for host in hosts if host != here)
    lost = [queues.send_inputs(other, 1.0, method="die_on") for _ in range(2)]  # one per worker: the first lingers
    outcomes = [queues.get_result(timeout=120) for _ in lost]
    failed = [r for r in outcomes if not r.success]
    assert failed and all("WorkerLost" in r.failure_info.exception for r in failed)
    assert all(r.value == here for r in outcomes if r.success)
    deadline = time.monotonic() + 120
    while server.worker_count(ready=True) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    again = []
    for _ in range(10):  # in pairs: both workers idle, each takes one
        for _ in range(2):
            queues.send_inputs("again", 0.2, method="sleep_then")
        again += [queues.get_result(timeout=120) for _ in range(2)]
    assert any(r.worker_info.hostname == other for r in again), "the replacement on the other node took no task"
    assert server.stop(timeout=60)
    assert not set(running) & {r.task_id for r in read_results(run_dir / "results.jsonl")}


def kill_relay() -> int:
    """On the relay's node: SIGKILL the relay (found by ``$DRAGON_CAMPAIGN_RELAY``); returns its pid."""
    import os
    import signal
    from pathlib import Path

    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"DRAGON_CAMPAIGN_RELAY=" in (entry / "environ").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                return int(entry.name)
        except OSError:
            continue
    raise LookupError("no relay process on this node")


def test_a_dead_relay_stops_the_campaign_and_says_why(serve, hosts, run_dir):
    """A node whose relay dies can no longer be fed: the campaign stops, ``failure`` names the relay, the node's
    workers are stopped without it, and the results already obtained are in results.jsonl.
    """
    queues, server = serve([tasks.noop], cpu=WorkerPool(workers=2, relayed=True))
    done = [queues.send_inputs(i, method="noop") for i in range(20)]
    assert sorted(queues.get_result(timeout=120).task_id for _ in done) == sorted(done)
    other = next(host for host in hosts if host != socket.gethostname())
    run_in_process(kill_relay, host=other)
    assert server.join(timeout=120), "the campaign did not stop"
    assert server.failure is not None and f"the relay of node {other}" in server.failure
    assert server.worker_count() == 0
    assert sorted(r.task_id for r in read_results(run_dir / "results.jsonl")) == sorted(done)


def write_array(handle: str, key: str, megabytes: int) -> tuple[str, str]:
    """On one node: put a seeded array into the store; returns this node's name and the array's digest."""
    import socket

    from ddict_store import attached

    array = np.random.default_rng(megabytes).integers(0, 2**63, size=megabytes * MB // 8, dtype=np.int64)
    attached(handle).namespace("multinode").put(key, array)
    return socket.gethostname(), hashlib.sha256(array.tobytes()).hexdigest()


def write_small(handle: str, key: str) -> tuple[str, str]:
    """An array small enough to live inline in the DDict entry."""
    import socket

    from ddict_store import attached

    array = np.arange(1000, dtype=np.float64)
    attached(handle).namespace("multinode").put(key, array)
    return socket.gethostname(), hashlib.sha256(array.tobytes()).hexdigest()


def read_array(handle: str, key: str) -> tuple[str, str]:
    """On the other node: read the array back (every byte of it, through the digest)."""
    import socket

    from ddict_store import attached

    array = attached(handle).namespace("multinode").get(key)
    return socket.gethostname(), hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.parametrize("megabytes", [0, 16], ids=["inline", "16MB-buffer"])
def test_store_moves_arrays_between_nodes_byte_for_byte(hosts, megabytes):
    from ddict_store import DDictStore

    with DDictStore(buffer_bytes_per_node=64 * MB) as store:
        assert sorted(store.manager_hosts()) == hosts, "one manager on each node"
        key = f"array-{megabytes}"
        if megabytes == 0:
            writer_host, written = run_in_process(write_small, store.handle, key, host=hosts[0])
        else:
            writer_host, written = run_in_process(write_array, store.handle, key, megabytes, host=hosts[0])
        reader_host, read = run_in_process(read_array, store.handle, key, host=hosts[1])
    assert (writer_host, reader_host) == (hosts[0], hosts[1])
    assert read == written


def proxy_array(handle: str, megabytes: int) -> tuple[str, str, bytes]:
    """On the first node: proxy an array through ProxyStore over the store (its buffers stay on this node)."""
    import pickle
    import socket

    from proxystore.store import get_store

    from ddict_store import attached
    from ddict_store.connector import ddict_proxy_store

    store = get_store("multinode-proxies") or ddict_proxy_store("multinode-proxies", attached(handle), register=True)
    array = np.random.default_rng(megabytes).random(megabytes * MB // 8)
    return socket.gethostname(), hashlib.sha256(array.tobytes()).hexdigest(), pickle.dumps(store.proxy(array))


def resolve_proxy(pickled: bytes) -> tuple[str, str]:
    """On the other node: resolve it (the connector assembles the frame from the chunks) and digest every byte."""
    import pickle
    import socket

    array = np.asarray(pickle.loads(pickled))
    return socket.gethostname(), hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_proxies_resolve_on_the_other_node(hosts):
    from ddict_store import DDictStore

    with DDictStore(buffer_bytes_per_node=64 * MB) as store:
        writer_host, written, pickled = run_in_process(proxy_array, store.handle, 8, host=hosts[0])
        reader_host, read = run_in_process(resolve_proxy, pickled, host=hosts[1])
    assert (writer_host, reader_host) == (hosts[0], hosts[1])
    assert read == written


def test_campaign_gives_the_results_it_gives_on_one_node(tmp_path, hosts):
    """Random search: its molecules are fixed by the seed, so each IP can be computed here in one process."""
    from dragon_campaign import RunDirectory
    from dragon_campaign.apps import moldesign
    from dragon_campaign.apps.moldesign.simulate import ionization_potential

    config = moldesign.Config(budget=6, policy="random", space_limit=600, chunk_size=300, seed=3)
    run_dir = RunDirectory(tmp_path / "run")
    pools = {"cpu": WorkerPool(workers=4, env={"OMP_NUM_THREADS": "1"}),
             "gpu": WorkerPool(gpus=True, env={"OMP_NUM_THREADS": "1"})}
    summary = moldesign.run(config, pools, run_dir)
    assert summary["simulations"] == 6 and summary["failed"] == 0
    simulated = [r for r in read_results(run_dir.results_path) if r.method == "simulate"]
    assert {r.worker_info.hostname for r in simulated} == set(hosts)
    for result in simulated:
        smiles = result.args[0]
        assert result.value["ip_ev"] == pytest.approx(ionization_potential(smiles).ip_ev, abs=1e-4), smiles
    assert json.loads((run_dir.path / "summary.json").read_text())["simulations"] == 6
