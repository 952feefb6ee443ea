"""Task bodies of the producer-consumer workflow, one pair per data path.

Each producer times its write and each consumer its read, inside the task and around the I/O only, so
the reported I/O times compare the data paths and nothing else.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dragon_campaign.apps.wave.simulation import simulate
from dragon_campaign.apps.wave.training import train_epoch

Arrays = tuple[np.ndarray, np.ndarray]


def warm_up() -> int:
    """An untimed first task: the worker has started and imported this module (and torch) once it returns."""
    return os.getpid()


def simulate_arrays(sim_id: int, grid_size: int, num_steps: int, sim_sleep: float) -> Arrays:
    """Futures and ProxyStore paths: the arrays are the task's result."""
    return simulate(sim_id, grid_size, num_steps, sim_sleep)


def train_on_arrays(datasets: Sequence[Any], kernel_size: int, seed: int, channels: int) -> tuple[dict, float]:
    """Futures and ProxyStore paths: the arrays (or proxies of them) are the task's arguments.

    Resolving proxies is the only I/O left inside the task; for plain arrays it is zero.
    """
    start = time.perf_counter()
    resolved = [(np.asarray(pair[0]), np.asarray(pair[1])) for pair in datasets]
    io_seconds = time.perf_counter() - start
    return train_epoch(resolved, kernel_size, seed, channels=channels).as_dict(), io_seconds


def simulate_to_files(sim_id: int, grid_size: int, num_steps: int, sim_sleep: float, directory: str) -> tuple[list[str], float]:
    inputs, outputs = simulate(sim_id, grid_size, num_steps, sim_sleep)
    paths = [str(Path(directory) / f"sim{sim_id}-{part}.npy") for part in ("inputs", "outputs")]
    start = time.perf_counter()
    np.save(paths[0], inputs)
    np.save(paths[1], outputs)
    return paths, time.perf_counter() - start


def train_from_files(file_pairs: Sequence[Sequence[str]], kernel_size: int, seed: int, channels: int) -> tuple[dict, float]:
    start = time.perf_counter()
    datasets = [(np.load(inputs), np.load(outputs)) for inputs, outputs in file_pairs]
    io_seconds = time.perf_counter() - start
    return train_epoch(datasets, kernel_size, seed, channels=channels).as_dict(), io_seconds


_stores: dict[str, Any] = {}


def _namespace(store_handle: str, namespace: str) -> Any:
    """The store, attached once per worker process (attaching is a round trip to the DDict).

    ddict_store is imported here, not at the top: Parsl workers import this module and must not import Dragon.
    """
    from ddict_store import DDictStore

    if store_handle not in _stores:
        _stores[store_handle] = DDictStore.attach(store_handle)
    return _stores[store_handle].namespace(*namespace.split("/"))


def simulate_to_store(sim_id: int, grid_size: int, num_steps: int, sim_sleep: float, store_handle: str, namespace: str) -> tuple[list[str], float]:
    inputs, outputs = simulate(sim_id, grid_size, num_steps, sim_sleep)
    run = _namespace(store_handle, namespace)
    keys = [f"sim{sim_id}/inputs", f"sim{sim_id}/outputs"]
    start = time.perf_counter()
    run.put(keys[0], inputs)
    run.put(keys[1], outputs)
    return keys, time.perf_counter() - start


def train_from_store(key_pairs: Sequence[Sequence[str]], kernel_size: int, seed: int, channels: int, store_handle: str, namespace: str) -> tuple[dict, float]:
    run = _namespace(store_handle, namespace)
    start = time.perf_counter()
    datasets = [(run.get(inputs), run.get(outputs)) for inputs, outputs in key_pairs]
    io_seconds = time.perf_counter() - start
    return train_epoch(datasets, kernel_size, seed, channels=channels).as_dict(), io_seconds


__all__ = [
    "warm_up",
    "simulate_arrays",
    "simulate_to_files",
    "simulate_to_store",
    "train_from_files",
    "train_from_store",
    "train_on_arrays",
]
