"""Per-topic ProxyStore thresholds in the task queues, with the DDict connector as the backend."""

from __future__ import annotations

import numpy as np
import pytest
import tasks
from proxystore.proxy import Proxy
from proxystore.store import Store

from ddict_store import DDictStore
from ddict_store.connector import DDictConnector
from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool

MB = 2**20


@pytest.fixture(scope="module")
def ddict_proxystore():
    with DDictStore(buffer_bytes_per_node=512 * MB) as data:
        store = Store("queue-ddict", DDictConnector(data, namespace="queue"), register=True)
        yield data, store
        store.close()


def test_arguments_and_results_above_threshold_travel_as_ddict_proxies(ddict_proxystore, run_dir):
    data, _ = ddict_proxystore
    queues = DragonQueues(topics=["big", "plain"], proxystore_name={"big": "queue-ddict"}, proxystore_threshold={"big": 1 * MB})
    server = DragonTaskServer([tasks.describe_input, tasks.make_array], queues, pools={"cpu": WorkerPool(workers=1)}, run_dir=run_dir)
    array = np.random.default_rng(5).random(16 * MB // 8)
    with server:
        before = set(data.namespace("queue").keys())
        queues.send_inputs(array, "tiny", method="describe_input", topic="big")
        result = queues.get_result(topic="big", timeout=60)
        assert result.success, result.failure_info
        assert result.value == ("Proxy", "str", int(array.view(np.uint64).sum()))
        assert len(set(data.namespace("queue").keys()) - before) == 1, "exactly the 16 MB argument was proxied"
        (timing,) = result.time.proxy.values()  # Colmena's time.proxy: the worker resolved it before the task
        assert timing["times"]["resolve"]["seconds"] > 0

        queues.send_inputs(array, "tiny", method="describe_input", topic="plain")
        plain = queues.get_result(topic="plain", timeout=60)
        assert plain.value[0] == "ndarray" and plain.time.proxy == {}

        queues.send_inputs(4, method="make_array", topic="big")
        proxied = queues.get_result(topic="big", timeout=60)
        assert type(proxied.value) is Proxy and np.array_equal(np.asarray(proxied.value), np.full(4 * MB // 8, 7.0))
    logged = (run_dir / "results.jsonl").read_text()
    assert "<proxy DDictKey(" in logged, "logging a proxied result must not resolve it"


def test_proxy_options_are_validated():
    with pytest.raises(ValueError, match="needs a proxystore_threshold"):
        DragonQueues(topics=["a"], proxystore_name="x")
    with pytest.raises(ValueError, match="proxystore_evict needs a proxystore_name"):
        DragonQueues(topics=["a"], proxystore_evict=True)
    with pytest.raises(ValueError, match=r"without a proxystore_name: \['b'\]"):
        DragonQueues(topics=["a", "b"], proxystore_name={"a": "x"}, proxystore_threshold=10, proxystore_evict={"b": True})
    with pytest.raises(ValueError, match="Unknown topic 'b'"):
        DragonQueues(topics=["a"], proxystore_name={"b": "x"}, proxystore_threshold=10)


def buffer_bytes(store: DDictStore) -> int:
    return store.live_bytes()["buffers_this_node"]


def test_evicting_topics_keep_the_store_bounded(run_dir):
    """Results consumed once (proxystore_evict) leave the store as they are read; the others stay until the
    ProxyStore store is closed, which drops its namespace (ddict_proxy_store's clear)."""
    from ddict_store.connector import ddict_proxy_store

    tasks_per_topic, kilobytes = 150, 256
    with DDictStore(buffer_bytes_per_node=256 * MB) as data:
        proxystore = ddict_proxy_store("bounded", data, register=True)
        queues = DragonQueues(topics=["consumed", "kept"], proxystore_name="bounded", proxystore_threshold=1000,
                              proxystore_evict={"consumed": True})
        server = DragonTaskServer([tasks.numbered_array], queues, pools={"cpu": WorkerPool(workers=2)}, run_dir=run_dir)
        with server:
            peak = 0
            for topic in ("consumed", "kept"):
                for index in range(tasks_per_topic):
                    queues.send_inputs(index, kilobytes, method="numbered_array", topic=topic)
                for _ in range(tasks_per_topic):
                    result = queues.get_result(topic=topic, timeout=60)
                    assert result.success, result.failure_info
                    value = np.asarray(result.value)  # resolving an evicting proxy evicts it
                    assert value.nbytes == kilobytes * 1024 and np.all(value == value[0])
                    peak = max(peak, buffer_bytes(data))
                if topic == "consumed":
                    assert buffer_bytes(data) == 0, "every consumed result was evicted"
            assert buffer_bytes(data) == tasks_per_topic * kilobytes * 1024, "kept results stay, each in its own buffer"
            assert peak >= buffer_bytes(data)
        proxystore.close()
        assert buffer_bytes(data) == 0 and data.namespace("proxystore-bounded").keys() == []
