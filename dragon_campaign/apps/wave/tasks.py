"""Task bodies of the producer-consumer workflow, one pair per data path.

Each producer times its write and each consumer its read, inside the task and around the I/O only, so
the reported I/O times compare the data paths and nothing else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dragon_campaign.apps.wave.config import TrainSettings
from dragon_campaign.apps.wave.kept import Arrays, keep
from dragon_campaign.apps.wave.memory import prefault
from dragon_campaign.apps.wave.simulation import simulate
from dragon_campaign.apps.wave.training import train_epoch


def warm_up(store_handle: str | None = None, prefault_bytes: int = 0) -> int:
    """An untimed first task: the worker has started, imported this module and run torch once when it returns.

    With a store, the worker also maps the store's buffer pool now, so that its timed writes and reads do
    not map shared memory page by page (see ``DDictStore.map_buffers``). Every worker keeps the memory it
    frees and touches ``prefault_bytes`` of it (the memory-neutral protocol, ``.memory``). Returns the
    worker's pid.
    """
    prefault(prefault_bytes)
    train_epoch([simulate(0, 8, 2, 0.0)], kernel_size=3, channels=2)  # torch's first-use costs (seconds), on every path
    if store_handle is not None:
        from ddict_store import attached

        attached(store_handle).map_buffers()
    return os.getpid()


def simulate_arrays(sim_id: int, grid_size: int, num_steps: int, sim_sleep: float, keep_dir: str | None = None) -> Arrays:
    """Futures and ProxyStore paths: the arrays are the task's result (also kept in ``keep_dir``, if given)."""
    arrays = simulate(sim_id, grid_size, num_steps, sim_sleep)
    if keep_dir is not None:
        keep(keep_dir, sim_id, arrays)
    return arrays


def train_on_arrays(datasets: Sequence[Any], settings: TrainSettings) -> tuple[dict, float]:
    """Futures and ProxyStore paths: the arrays (or proxies of them) are the task's arguments.

    Proxies arrive resolved (the worker resolves input proxies before the task, timed in the result's
    ``time.proxy``); what is left here is viewing them as arrays and passing over every byte once, as
    every trainer does.
    """
    start = time.perf_counter()
    resolved = [(np.asarray(pair[0]), np.asarray(pair[1])) for pair in datasets]
    for pair in resolved:  # views of the store (ProxyStore path) are not read until touched: touch every byte
        read_every_byte(pair[0])
        read_every_byte(pair[1])
    io_seconds = time.perf_counter() - start
    return train_epoch(resolved, **settings._asdict()).as_dict(), io_seconds


def simulate_to_files(sim_id: int, grid_size: int, num_steps: int, sim_sleep: float, directory: str) -> tuple[list[str], float]:
    """Simulate and write each pair of frames to a .npy file; returns the files and the write time."""
    inputs, outputs = simulate(sim_id, grid_size, num_steps, sim_sleep)
    paths = [str(Path(directory) / f"sim{sim_id}-{part}.npy") for part in ("inputs", "outputs")]
    start = time.perf_counter()
    np.save(paths[0], inputs)
    np.save(paths[1], outputs)
    return paths, time.perf_counter() - start


def train_from_files(file_pairs: Sequence[Sequence[str]], settings: TrainSettings) -> tuple[dict, float]:
    """Train one epoch on the pairs in these files; returns the report and the read time."""
    start = time.perf_counter()
    datasets = [(np.load(inputs), np.load(outputs)) for inputs, outputs in file_pairs]
    io_seconds = time.perf_counter() - start
    return train_epoch(datasets, **settings._asdict()).as_dict(), io_seconds


def read_every_byte(array: np.ndarray) -> int:
    """XOR of the array's 64-bit words: reads each byte once, at memory speed."""
    flat = array.reshape(-1).view(np.uint8)
    words = flat[: flat.nbytes - flat.nbytes % 8].view(np.uint64)
    return int(np.bitwise_xor.reduce(words)) ^ int(np.bitwise_xor.reduce(flat[words.nbytes:], initial=0))


def _namespace(store_handle: str, namespace: str) -> Any:
    """This run's namespace of the store (ddict_store is imported here: the module must import without Dragon)."""
    from ddict_store import attached

    return attached(store_handle).namespace(*namespace.split("/"))


def simulate_to_store(sim_id: int, grid_size: int, num_steps: int, sim_sleep: float, store_handle: str, namespace: str,
                      keep_dir: str | None = None) -> tuple[Any, float]:
    """Writes both arrays as one value (one buffer, one DDict entry) and returns its reference (``ValueRef``)
    and the time of the write; then keeps the arrays in ``keep_dir``, if given (untimed).
    """
    inputs, outputs = simulate(sim_id, grid_size, num_steps, sim_sleep)
    run = _namespace(store_handle, namespace)
    start = time.perf_counter()
    ref = run.put(f"sim{sim_id}", {"inputs": inputs, "outputs": outputs})
    seconds = time.perf_counter() - start
    if keep_dir is not None:
        keep(keep_dir, sim_id, (inputs, outputs))
    return ref, seconds


def train_from_store(refs: Sequence[Any], settings: TrainSettings, store_handle: str, namespace: str) -> tuple[dict, float]:
    """Trains on each simulation's arrays in place, in the writer's buffer: by reference, no DDict lookup
    and no copy on the writer's node (a copy on other nodes).

    A view is not a read, so the timed read also passes over every byte once (``read_every_byte``).
    """
    run = _namespace(store_handle, namespace)
    start = time.perf_counter()
    datasets = []
    for ref in refs:
        arrays = run.read(ref, copy=False)
        for array in arrays.values():
            read_every_byte(array)
        datasets.append((arrays["inputs"], arrays["outputs"]))
    io_seconds = time.perf_counter() - start
    return train_epoch(datasets, **settings._asdict()).as_dict(), io_seconds


def simulate_to_ray(sim_id: int, grid_size: int, num_steps: int, sim_sleep: float) -> tuple[list[Any], float]:
    """Ray path: puts both arrays in Ray's object store as one object; returns its ref (in a list, so Ray
    hands the ref itself to whoever receives it) and the time of the put.
    """
    import ray

    inputs, outputs = simulate(sim_id, grid_size, num_steps, sim_sleep)
    start = time.perf_counter()
    ref = ray.put({"inputs": inputs, "outputs": outputs})
    return [ref], time.perf_counter() - start


def train_from_ray(refs: Sequence[Any], settings: TrainSettings) -> tuple[dict, float]:
    """Ray path: gets each simulation's arrays from the object store (read-only views of its shared memory,
    no copy on this node) and passes over every byte once.
    """
    import ray

    start = time.perf_counter()
    datasets = []
    for arrays in ray.get(list(refs)):
        for array in arrays.values():
            read_every_byte(array)
        datasets.append((arrays["inputs"], arrays["outputs"]))
    io_seconds = time.perf_counter() - start
    return train_epoch(datasets, **settings._asdict()).as_dict(), io_seconds


__all__ = [
    "warm_up",
    "simulate_arrays",
    "simulate_to_files",
    "simulate_to_ray",
    "simulate_to_store",
    "train_from_files",
    "train_from_ray",
    "train_from_store",
    "train_on_arrays",
]
