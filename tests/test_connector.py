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


def test_frames_carry_arrays_and_tensors_out_of_band():
    import torch

    from ddict_store.frames import FrameDeserializer, FrameSerializer, is_frame

    value = {
        "array": np.arange(12.0).reshape(3, 4),
        "strided": np.arange(20)[::2],  # not contiguous: numpy pickles it in band
        "empty": np.empty((0, 3)),
        "tensor": torch.arange(6, dtype=torch.float32).reshape(2, 3).requires_grad_(),
        "half": torch.ones(5, dtype=torch.bfloat16),
        "objects": np.array(["a", None], dtype=object),
        "text": "plain",
    }
    frame = FrameSerializer()(value)  # no store: a self-contained frame
    assert is_frame(frame)
    for views in (False, True):
        copy = FrameDeserializer(views=views)(frame)
        assert copy.keys() == value.keys() and copy["text"] == "plain" and list(copy["objects"]) == ["a", None]
        for name in ("array", "strided", "empty"):
            assert np.array_equal(copy[name], value[name]) and copy[name].dtype == value[name].dtype
        assert torch.equal(copy["tensor"].detach(), value["tensor"].detach()) and copy["tensor"].requires_grad
        assert copy["half"].dtype == torch.bfloat16 and torch.equal(copy["half"], value["half"])
        assert copy["array"].flags.writeable is not views
    assert FrameDeserializer()(__import__("proxystore.serialize").serialize.serialize([1, 2])) == [1, 2]
    square = FrameDeserializer()(FrameSerializer()(lambda x: x * x))  # pickle refuses it: cloudpickle takes over
    assert square(7) == 49


def test_frames_go_into_managed_memory_once_and_leave_with_the_object():
    from proxystore.store.utils import get_key

    from ddict_store.connector import ddict_proxy_store
    from ddict_store.frames import FrameSerializer

    with DDictStore(buffer_bytes_per_node=64 * MB) as data:
        store = ddict_proxy_store("frames-test", data)
        array = np.random.default_rng(1).random(MB // 8)  # exactly 1 MB: a power of two, as Dragon's blocks
        proxy = store.proxy(array, populate_target=False)
        assert data.live_bytes()["buffers_this_node"] == MB, "the array's bytes alone, adopted without another copy"
        assert run_in_process(checksum_of, proxy) == (int(array.view(np.uint64).sum()), array.shape)
        store.evict(get_key(proxy))
        assert data.live_bytes()["buffers_this_node"] == 0
        frame = FrameSerializer(data)(array)  # serialized, never stored (no connector took it)
        assert data.live_bytes()["buffers_this_node"] == MB
        del frame
        gc.collect()
        assert data.live_bytes()["buffers_this_node"] == 0, "a frame no connector stored gives its memory back"
        views = ddict_proxy_store("frames-views", data, views=True)
        resolved = np.asarray(views.proxy(array, populate_target=False))
        assert not resolved.flags.writeable and np.array_equal(resolved, array)
        views.close()  # clear=True: the namespace goes with the ProxyStore store
        store.close()
        assert data.live_bytes()["buffers_this_node"] == 0
