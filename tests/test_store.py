"""ddict_store under the real Dragon runtime: typed round trips across processes, namespaces, waits, errors."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest
import torch
from conftest import run_in_process

from ddict_store import DDictStore, StoreClosedError, StoreFullError, UnsupportedTypeError, latest_model, model, publish_model

MB = 2**20


@pytest.fixture(scope="module")
def store():
    with DDictStore(ddict_bytes_per_node=256 * MB, buffer_bytes_per_node=512 * MB, inline_bytes=16 * 1024) as created:
        yield created


def numpy_samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    matrix = rng.random((300, 200))
    return {
        "float64": matrix,
        "float32": rng.random((64, 64), dtype=np.float32),
        "int8": rng.integers(-128, 127, 1000, dtype=np.int8),
        "uint16": rng.integers(0, 65535, (10, 10, 10), dtype=np.uint16),
        "bool": rng.random(77) > 0.5,
        "complex64": (rng.random(50) + 1j * rng.random(50)).astype(np.complex64),
        "zero_d": np.array(3.5),
        "empty": np.zeros((0, 4)),
        "transposed": matrix.T,
        "strided": matrix[::3, 1::2],
        "large": rng.random(3 * MB // 8 * 4),  # 12 MB: a managed-memory buffer
    }


def torch_samples() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    base = torch.rand(40, 30, generator=generator)
    return {
        "t_float32": base,
        "t_bfloat16": base.to(torch.bfloat16),
        "t_int64": torch.randint(0, 1000, (123,), generator=generator),
        "t_zero_d": torch.tensor(7),
        "t_transposed": base.t(),
        "t_large": torch.rand(1024, 1024, generator=generator),
    }


def produce(handle: str) -> list[str]:
    store = DDictStore.attach(handle)
    samples = {**numpy_samples(), **torch_samples()}
    store.namespace("producer").put_batch(samples)
    store.close()
    return sorted(samples)


def consume(handle: str, keys: list[str]) -> dict[str, object]:
    store = DDictStore.attach(handle)
    values = dict(zip(keys, store.namespace("producer").get_batch(keys), strict=True))
    store.close()
    return values


def test_arrays_and_tensors_are_byte_identical_across_processes(store):
    keys = run_in_process(produce, store.handle)
    received = run_in_process(consume, store.handle, keys)
    for name, expected in numpy_samples().items():
        got = received[name]
        assert isinstance(got, np.ndarray) and got.dtype == expected.dtype and got.shape == expected.shape, name
        assert got.tobytes() == np.ascontiguousarray(expected).tobytes(), name
    for name, expected in torch_samples().items():
        got = received[name]
        assert isinstance(got, torch.Tensor) and got.dtype == expected.dtype and got.shape == expected.shape, name
        assert torch.equal(got, expected), name


def test_python_objects_and_placements(store):
    ns = store.namespace("objects")
    ns.put("config", {"lr": 0.1, "layers": [1, 2, 3]})
    assert ns.get("config") == {"lr": 0.1, "layers": [1, 2, 3]}
    array = np.arange(1000.0)
    for placement in ("inline", "buffer", "chunks"):
        ns.put(f"a_{placement}", array, placement=placement)
        assert np.array_equal(ns.get(f"a_{placement}"), array)
    out = np.empty_like(array)
    assert ns.get("a_buffer", out=out) is not None and np.array_equal(out, array)
    with pytest.raises(ValueError, match="Unknown placement"):
        ns.put("x", 1, placement="nowhere")


def test_namespaces_isolate_and_list(store):
    run_a, run_b = store.namespace("campaign", "run-a"), store.namespace("campaign", "run-b")
    run_a.put("x", 1)
    run_b.put("x", 2)
    run_a.namespace("simulate").put("y", 3)
    assert (run_a.get("x"), run_b.get("x")) == (1, 2)
    assert run_a.keys() == ["simulate/y", "x"] and run_b.keys() == ["x"]
    run_a.clear()
    assert run_a.keys() == [] and run_b.get("x") == 2


def test_overwrite_and_delete_free_buffers(store):
    ns = store.namespace("overwrite")
    for i in range(20):  # 20 x 16 MB would not fit the 512 MB pool twice over if buffers leaked
        ns.put("big", np.full(2 * MB, i, dtype=np.float64))
    assert ns.get("big")[0] == 19
    ns.delete("big")
    assert "big" not in ns
    with pytest.raises(KeyError):
        ns.get("big")
    assert ns.get("big", default=None) is None


def read_refs(handle: str, refs: list) -> list[object]:
    store = DDictStore.attach(handle)
    try:
        return [store.read(ref) for ref in refs]
    finally:
        store.close()


def test_references_read_their_own_value_or_raise(store):
    ns = store.namespace("refs")
    big, small = np.arange(MB, dtype=np.int64), {"step": 3}
    big_ref, small_ref = ns.put("big", big), ns.put("small", small)
    assert big_ref.entry.buffer is not None and small_ref.entry.inline is not None
    read_big, read_small = run_in_process(read_refs, store.handle, [big_ref, small_ref])
    assert np.array_equal(read_big, big) and read_small == small
    assert np.shares_memory(ns.read(big_ref, copy=False), ns.read(big_ref, copy=False))  # a view of the writer's buffer
    ns.put("big", big + 1)
    ns.put("small", {"step": 4})
    for stale in (big_ref, small_ref):
        with pytest.raises(KeyError, match="overwritten"):
            ns.read(stale)
    fresh = ns.put("gone", big)
    ns.delete("gone")
    with pytest.raises(KeyError):
        run_in_process(read_refs, store.handle, [fresh])


def read_views(handle: str, ref) -> tuple[bool, dict[str, np.ndarray]]:
    """Maps the pool into this process first, as a worker's warm-up would; the data must be unchanged."""
    store = DDictStore.attach(handle)
    try:
        mapped = store.map_buffers()
        views = store.read(ref, copy=False)
        return mapped, {name: np.array(view) for name, view in views.items()}
    finally:
        store.close()


def test_dict_of_arrays_is_one_value_with_in_place_views(store):
    ns = store.namespace("bundles")
    rng = np.random.default_rng(4)
    pair = {"inputs": rng.random((40, 1, 64, 64), dtype=np.float32), "outputs": rng.integers(0, 9, (13, 3), dtype=np.int8),
            "odd": np.arange(5, dtype=np.int16)[::2]}  # 3 x 2 bytes: the next array must still start aligned
    for placement in ("inline", "buffer", "chunks"):
        ns.put(f"p_{placement}", pair, placement=placement)
        back = ns.get(f"p_{placement}")
        assert list(back) == list(pair) and all(np.array_equal(back[k], pair[k]) and back[k].dtype == pair[k].dtype for k in pair)
    ref = ns.put("pair", pair)
    assert ref.entry.kind == "arrays" and ref.entry.buffer is not None
    views = ns.read(ref, copy=False)
    assert all(not view.flags.writeable and view.ctypes.data % 64 == 0 for view in views.values())
    assert np.shares_memory(views["inputs"], ns.read(ref, copy=False)["inputs"])
    mapped, copies = run_in_process(read_views, store.handle, ref)
    assert mapped and all(np.array_equal(copies[k], pair[k]) for k in pair)
    assert ns.get("pair")["inputs"].flags.writeable  # a default get is a private copy


def write_later(handle: str, key: str, delay: float) -> None:
    time.sleep(delay)
    store = DDictStore.attach(handle)
    store.namespace("waits").put(key, np.ones(10))
    store.close()


def test_wait_blocks_until_a_producer_writes(store):
    writer = threading.Thread(target=run_in_process, args=(write_later, store.handle, "late", 1.0))
    writer.start()
    start = time.monotonic()
    value = store.namespace("waits").wait("late", timeout=60)
    assert np.array_equal(value, np.ones(10)) and time.monotonic() - start >= 0.9
    writer.join()
    with pytest.raises(TimeoutError, match="'waits/never'"):
        store.namespace("waits").get("never", timeout=0.2)


def test_chunked_value_larger_than_one_manager():
    with DDictStore(managers_per_node=4, ddict_bytes_per_node=64 * MB, chunk_bytes=4 * MB) as small:
        array = np.random.default_rng(3).random(24 * MB // 8)  # 24 MB > 16 MB per manager
        small.put("huge", array, placement="chunks")
        assert np.array_equal(run_in_process(read_key, small.handle, "huge"), array)
        with pytest.raises(StoreFullError, match=r"'too-big' \(67,108,864 bytes\).*67,108,864 bytes over 4 manager"):
            small.put("too-big", np.zeros(64 * MB // 8), placement="chunks")
        assert "too-big" not in small


def read_key(handle: str, key: str) -> object:
    store = DDictStore.attach(handle)
    try:
        return store.get(key)
    finally:
        store.close()


def test_full_buffer_pool_names_key_size_and_capacity():
    with DDictStore(buffer_bytes_per_node=8 * MB) as small:
        with pytest.raises(StoreFullError, match=r"'big' \(16,777,216 bytes\).*capacity 8,388,608"):
            small.put("big", np.zeros(2 * MB))
        assert "big" not in small


def test_unsupported_type_and_closed_store(store):
    with pytest.raises(UnsupportedTypeError, match="function"):
        store.put("fn", lambda: 1)
    with pytest.raises(UnsupportedTypeError, match="dtype object"):
        store.put("objects", np.array([object()]))
    attached = DDictStore.attach(store.handle)
    attached.close()
    with pytest.raises(StoreClosedError, match="closed"):
        attached.get("anything")
    with pytest.raises(StoreClosedError, match="closed"):
        attached.map_buffers()


def test_model_versions(store):
    ns = store.namespace("models-test")
    weights = [{"w": torch.full((3, 3), float(v)), "b": torch.zeros(3)} for v in range(3)]
    assert [publish_model(ns, "mpnn", w) for w in weights] == [0, 1, 2]
    version, latest = run_in_process(read_latest, store.handle)
    assert version == 2 and torch.equal(latest["w"], weights[2]["w"])
    assert torch.equal(model(ns, "mpnn", 0)["w"], weights[0]["w"])
    with pytest.raises(KeyError, match="no version 7"):
        model(ns, "mpnn", 7)
    with pytest.raises(KeyError, match="No version of model 'other'"):
        latest_model(ns, "other")


def read_latest(handle: str) -> tuple[int, dict]:
    store = DDictStore.attach(handle)
    try:
        return latest_model(store.namespace("models-test"), "mpnn")
    finally:
        store.close()


def write_one(handle: str, index: int) -> int:
    store = DDictStore.attach(handle)
    try:
        store.namespace("race").put(f"w{index}", np.full(MB, index, dtype=np.uint8))  # a buffer: the pool is created now
        return index
    finally:
        store.close()


def test_concurrent_first_writers_share_the_node_pool():
    with DDictStore(buffer_bytes_per_node=64 * MB) as fresh:
        writers = [threading.Thread(target=run_in_process, args=(write_one, fresh.handle, i)) for i in range(4)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        assert fresh.namespace("race").keys() == [f"w{i}" for i in range(4)]
        assert all(fresh.namespace("race").get(f"w{i}")[0] == i for i in range(4))


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
def test_a_ddict_whose_start_up_fails_is_started_again(fault, caplog):
    """dragonhpc 0.15 now and then never finishes starting a DDict: that try is abandoned (at once if its
    orchestrator died, at the timeout if it hangs) and a second DDict comes up in its place."""
    before = {process.pid for process in psutil.process_iter()}
    struck: list[int] = []

    def strike_the_first_new_dragon_process() -> None:  # the first process a DDict starts is its orchestrator
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not struck:
            for process in psutil.process_iter(["cmdline"]):
                if process.pid not in before and "_dragon_native_python_process_main" in " ".join(process.info["cmdline"] or []):
                    os.kill(process.pid, getattr(signal, fault))
                    struck.append(process.pid)
                    return
            time.sleep(0.005)

    striker = threading.Thread(target=strike_the_first_new_dragon_process)
    striker.start()
    try:
        with caplog.at_level(logging.WARNING, logger="ddict_store.workarounds"), \
                DDictStore(ddict_bytes_per_node=64 * MB, buffer_bytes_per_node=64 * MB, timeout=15) as store:
            store.put("answer", 42)
            assert store.get("answer") == 42
    finally:
        striker.join()
        for pid in struck:  # a stopped orchestrator would outlive the test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert struck
    stage = "exited with" if fault == "SIGKILL" else "runs but did not report within 15 s"
    assert "(try 1 of 2) did not start: its orchestrator" in caplog.text and stage in caplog.text, caplog.text
