"""DDictConnector under ProxyStore 1.1: proxies resolved in other Dragon processes, eviction, ownership."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pytest
from conftest import run_in_process
from proxystore.connectors.protocols import Connector
from proxystore.store import Store
from proxystore.store.utils import get_key

from ddict_store import DDictStore
from ddict_store.connector import DDictConnector

MB = 2**20


@pytest.fixture(scope="module")
def proxystore():
    with DDictStore(buffer_bytes_per_node=512 * MB) as data:
        store = Store("ddict-test", DDictConnector(data), register=True)
        yield store
        store.close()


def checksum_of(proxy) -> tuple[int, tuple[int, ...]]:
    return int(np.asarray(proxy).view(np.uint64).sum()), tuple(proxy.shape)


def test_is_a_proxystore_connector(proxystore):
    assert isinstance(proxystore.connector, Connector)
    rebuilt = DDictConnector.from_config(proxystore.connector.config())
    key = rebuilt.put(b"hello")
    assert bytes(proxystore.connector.get(key)) == b"hello" and rebuilt.exists(key)
    assert [bytes(b) for b in rebuilt.get_batch(rebuilt.put_batch([b"a", b"bc"]))] == [b"a", b"bc"]
    rebuilt.evict(key)
    assert not rebuilt.exists(key) and rebuilt.get(key) is None
    rebuilt.evict(key)  # evicting twice is not an error
    rebuilt.close()


def test_proxy_resolves_in_another_process(proxystore):
    array = np.random.default_rng(0).random(16 * MB // 8)
    proxy = proxystore.proxy(array)
    assert run_in_process(checksum_of, proxy) == (int(array.view(np.uint64).sum()), array.shape)


def checksum_of_pickled(pickled: bytes) -> tuple[int, tuple[int, ...]]:
    return checksum_of(pickle.loads(pickled))


def test_evicting_proxy_is_removed_after_resolution(proxystore):
    proxy = proxystore.proxy(np.arange(10_000.0), evict=True, populate_target=False)
    key = get_key(proxy)
    assert proxystore.connector.exists(key)
    # handed over pickled, as a task queue does: Dragon's process launch inspects its arguments with
    # isinstance(), which would resolve (and so evict) an unresolved proxy in this process
    run_in_process(checksum_of_pickled, pickle.dumps(proxy))
    assert not proxystore.connector.exists(key)


def test_owned_proxy_evicts_when_dropped(proxystore):
    owned = proxystore.owned_proxy(np.ones(1000))
    key = get_key(owned)
    assert proxystore.connector.exists(key) and float(np.sum(owned)) == 1000.0
    del owned
    gc.collect()
    assert not proxystore.connector.exists(key)
