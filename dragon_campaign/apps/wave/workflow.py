"""The producer-consumer workflow: N wave simulations, then M CNN trainers that each train one epoch on
ALL the data, over one of four data paths (``--data_path``):

* ``futures``: Parsl apps whose results and arguments carry the arrays (pickled through the executor);
* ``files``: Parsl apps; simulations write .npy files, trainers read all of them;
* ``ddict``: Dragon worker pools; simulations write to ``ddict_store``, trainers read from it;
* ``proxystore``: Dragon worker pools; the task queues turn the simulation results into DDict proxies
  (``ddict_proxy_store`` with views: the trainers only read, and the proxies live until the run ends),
  which the trainers receive as arguments and resolve;
* ``ray``: Ray tasks on a local Ray instance; simulations ``ray.put`` their arrays, trainers receive the
  object refs and ``ray.get`` them (zero-copy views of Ray's shared-memory object store).

Simulations run on a CPU pool, trainers on a GPU pool (one pinned worker per GPU, CPU workers where there
is none). Run time is the wall time of a phase; I/O time is the mean over tasks of the time each spent in
its own write (simulations) or read (trainers); every trainer passes over every byte it reads once. For
``futures`` the transfer happens inside Parsl, outside any task, so its I/O times are reported as not
available, as in the original study. The CPU seconds each group of processes spent during the training
phase are recorded too (``.cpu``).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ddict_store import DDictStore
from ddict_store.workarounds import dragon_pids
from dragon_campaign import (
    DragonQueues,
    DragonTaskServer,
    MPIMethod,
    ProgressReporter,
    Result,
    RunDirectory,
    WorkerPool,
    futures_status,
    resume_script,
)
from dragon_campaign.apps.wave import tasks
from dragon_campaign.apps.wave.config import Config
from dragon_campaign.apps.wave.cpu import GROUPS, CpuMeter
from dragon_campaign.apps.wave.kept import Arrays, load_kept
from dragon_campaign.apps.wave.memory import prefault
from dragon_campaign.apps.wave.mpi_simulation import simulate_decomposed
from dragon_campaign.apps.wave.simulation import data_bytes, simulate
from dragon_campaign.apps.wave.training import sample_checksum

logger = logging.getLogger(__name__)

CSV_FIELDS = ["implementation", "nodes", "data_gb", "sim_run_s", "sim_io_s", "train_run_s", "train_io_s", "setup_s",
              "train_cpu_tasks_s", "train_cpu_services_s", "train_cpu_runtime_s", "num_sims", "grid_size", "num_steps", "sim_sleep", "num_trainers", "all_samples_seen",
              "kept_tasks"]


@dataclass
class RunReport:
    """One row of the timing table, plus what each trainer saw."""

    implementation: str
    nodes: int
    data_gb: float
    sim_run_s: float
    sim_io_s: float | None
    train_run_s: float
    train_io_s: float | None
    setup_s: float  # untimed warm-up: workers started, modules imported, store buffers mapped
    kept_tasks: int  # finished in earlier jobs of a resumed run, not run again: its times are of the rest only
    train_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per group of processes (cpu.GROUPS)
    trainers: list[dict] = field(default_factory=list)
    expected_samples: int = 0
    expected_checksum: int = 0

    @property
    def all_samples_seen(self) -> bool:
        """Whether every trainer saw every sample (by count and checksum)."""
        return all(t["samples"] == self.expected_samples and t["checksum"] == self.expected_checksum for t in self.trainers)

    def csv_row(self, config: Config) -> dict[str, Any]:
        """The run's row of the timing table."""
        row = {k: v for k, v in asdict(self).items() if k in CSV_FIELDS}
        row.update({f"train_cpu_{group}_s": self.train_cpu.get(group) for group in GROUPS})
        row.update(num_sims=config.num_sims, grid_size=config.grid_size, num_steps=config.num_steps,
                   sim_sleep=config.sim_sleep, num_trainers=len(self.trainers), all_samples_seen=self.all_samples_seen)
        return {k: ("NA" if row[k] is None else row[k]) for k in CSV_FIELDS}


def expected_account(config: Config) -> tuple[int, int]:
    """Samples and checksum every trainer must report (recomputed here, without sleeping)."""
    samples = checksum = 0
    for sim_id in range(config.num_sims):
        count, crc = sample_checksum(*simulate(sim_id, config.grid_size, config.num_steps))
        samples += count
        checksum ^= crc
    return samples, checksum


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def run_dragon(config: Config, run_dir: RunDirectory, nodes: int, pools: dict[str, WorkerPool], resume: bool = False) -> RunReport:
    """The ddict and proxystore paths, on Dragon worker pools ("cpu" for simulations, "gpu" for trainers).

    With ``resume``, what earlier jobs of the run finished (the journal) is not run again: a finished
    simulation's kept arrays (``keep_data``) go into this job's store, a finished trainer's report is reused.
    """
    kernels = config.trainer_kernels
    setup_start = time.perf_counter()
    size = data_bytes(config.num_sims, config.grid_size, config.num_steps)
    keep_dir = run_dir.path / "data"
    keep_dir.mkdir(exist_ok=True)
    keep_arg = (str(keep_dir),) if config.keep_data else ()
    with DDictStore(buffer_bytes_per_node=2 * size + 256 * 2**20) as store:
        namespace = f"wave/{run_dir.path.name}"
        if config.data_path == "proxystore":
            from ddict_store.connector import ddict_proxy_store

            proxy_store = ddict_proxy_store(f"wave-{run_dir.path.name}", store, views=True, register=True)
            queues = DragonQueues(topics=["simulate", "train"], proxystore_name={"simulate": proxy_store.name},
                                  proxystore_threshold={"simulate": config.proxy_threshold})
            simulate_method: Callable[..., Any] = tasks.simulate_arrays
            train_method: Callable[..., Any] = tasks.train_on_arrays
            store_args: tuple[str, ...] = ()
            if config.sim_ranks > 1:
                simulate_method = MPIMethod(simulate_decomposed, ranks=config.sim_ranks, name="simulate_arrays")

            def into_store(sim_id: int, arrays: Arrays) -> Any:
                return proxy_store.proxy(arrays)
        else:
            queues = DragonQueues(topics=["simulate", "train"])
            simulate_method, train_method, store_args = tasks.simulate_to_store, tasks.train_from_store, (store.handle, namespace)
            stored = store.namespace(*namespace.split("/"))

            def into_store(sim_id: int, arrays: Arrays) -> Any:
                return stored.put(f"sim{sim_id}", {"inputs": arrays[0], "outputs": arrays[1]})
        methods: list[Any] = [simulate_method, (train_method, {"pool": "gpu"}), (tasks.warm_up, {"pool": ["cpu", "gpu"]})]
        with DragonTaskServer(methods, queues, pools=pools, run_dir=run_dir) as server, \
                ProgressReporter(server):
            earlier = _finished_earlier(server) if resume else {}
            server.watch(store.service_puids(), "a DDict process of the store")
            prefault(size)
            for _ in range(server.worker_count()):  # idle workers get one task each: every worker warms up
                queues.send_inputs(store.handle, size, method="warm_up")
            meter = CpuMeter(service_pids=dragon_pids(store.service_puids()))
            for _ in range(server.worker_count()):
                meter.task_pids.add(queues.get_result().value)
            setup = time.perf_counter() - setup_start
            logger.info(f"{server.worker_count()} workers warmed up in {setup:.1f} s; {config.num_sims} simulations start")
            start = time.perf_counter()
            sims: dict[int, Any] = {}
            datasets: dict[int, Any] = {}
            for sim_id in range(config.num_sims):
                result = earlier.get(("simulate", sim_id))
                arrays = load_kept(keep_dir, sim_id) if result is not None else None
                if arrays is not None:  # finished in an earlier job: its kept arrays, not a new simulation
                    sims[sim_id], datasets[sim_id] = result, into_store(sim_id, arrays)
                    continue
                queues.send_inputs(sim_id, config.grid_size, config.num_steps, config.sim_sleep, *store_args, *keep_arg,
                                   method=simulate_method.__name__, topic="simulate", keep_inputs=False, task_info={"sim_id": sim_id})
            kept = len(sims)
            if kept:
                logger.info(f"{kept} simulation(s) finished in earlier jobs: their kept arrays are in the store")
            for _ in range(config.num_sims - len(sims)):
                result = queues.get_result("simulate")
                sims[result.task_info["sim_id"]] = result
            sim_run = time.perf_counter() - start
            logger.info(f"Simulations done in {sim_run:.1f} s; {len(kernels)} trainers start")
            failed = [r.failure_reason for r in sims.values() if not r.success]
            if failed:
                raise RuntimeError(f"{len(failed)} simulation(s) failed: {failed[0]}")
            for sim_id, result in sims.items():  # proxies (the trainers resolve them), or references into the store
                datasets.setdefault(sim_id, result.value if config.data_path == "proxystore" else result.value[0])
            ordered = [datasets[sim_id] for sim_id in range(config.num_sims)]
            if config.data_path == "proxystore":
                sim_io = _mean([r.time.serialize_results for r in sims.values()])  # proxying = writing to the store
            else:
                sim_io = _mean([r.value[1] for r in sims.values()])
            meter.start()
            start = time.perf_counter()
            trained = {index: earlier[("train", index)] for index in range(len(kernels)) if ("train", index) in earlier}
            kept += len(trained)
            for index, kernel in enumerate(kernels):
                if index not in trained:
                    queues.send_inputs(ordered, config.train_settings(kernel), *store_args, method=train_method.__name__,
                                       topic="train", keep_inputs=False, task_info={"trainer": index})
            for _ in range(len(kernels) - len(trained)):
                result = queues.get_result("train")
                trained[result.task_info["trainer"]] = result
            train_run = time.perf_counter() - start
            train_cpu = meter.stop()
            logger.info(f"Training done in {train_run:.1f} s")
        if config.data_path == "proxystore":
            proxy_store.close()
    return _report(config, nodes, setup, sim_run, sim_io, train_run, [trained[i] for i in range(len(kernels))], train_cpu, kept)


def _finished_earlier(server: DragonTaskServer) -> dict[tuple[str, int], Result]:
    """What earlier jobs of the run finished successfully: ("simulate", sim id) and ("train", trainer index)."""
    assert server.journal is not None  # the wave's server keeps its journal
    finished = {}
    for result in resume_script(server.journal):
        if result.success and result.topic in ("simulate", "train"):
            finished[(result.topic, result.task_info["sim_id" if result.topic == "simulate" else "trainer"])] = result
    logger.info(f"Resuming: {len(finished)} task(s) finished in earlier jobs of {server.run_dir.path}")
    return finished


def _report(config: Config, nodes: int, setup: float, sim_run: float, sim_io: float | None, train_run: float,
            trained: list, train_cpu: dict[str, float], kept: int = 0) -> RunReport:
    failed = [r.failure_reason for r in trained if not r.success]
    if failed:
        raise RuntimeError(f"{len(failed)} trainer(s) failed: {failed[0]}")
    samples, checksum = expected_account(config)
    reports = [r.value[0] for r in trained]
    train_io: float | None
    if config.data_path == "proxystore":  # the worker resolves input proxies before the task: that is I/O too
        train_io = _mean([r.value[1] + sum(t["times"]["resolve"]["seconds"] for t in r.time.proxy.values()) for r in trained])
    else:
        train_io = None if config.data_path == "futures" else _mean([r.value[1] for r in trained])
    size = data_bytes(config.num_sims, config.grid_size, config.num_steps) / 1e9
    return RunReport(config.data_path, nodes, size, sim_run, sim_io, train_run, train_io, setup, kept, train_cpu, reports, samples, checksum)


def run_parsl(config: Config, run_dir: RunDirectory, nodes: int) -> RunReport:
    """The futures and files paths, on a Parsl HighThroughputExecutor on this node."""
    import parsl
    from parsl import python_app
    from parsl.config import Config as ParslConfig
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    cores = os.cpu_count() or 1
    executor = HighThroughputExecutor(max_workers_per_node=config.sim_workers or cores, address="127.0.0.1",
                                      provider=LocalProvider(init_blocks=1, max_blocks=1))
    data_dir = run_dir.path / "data"
    data_dir.mkdir(exist_ok=True)
    kernels = config.trainer_kernels
    setup_start = time.perf_counter()
    size = data_bytes(config.num_sims, config.grid_size, config.num_steps)
    prefault(size)  # futures: results arrive in this process
    if config.data_path == "files":  # the page cache the simulations write into: written once, then emptied
        scratch = data_dir / "prefault"
        np.ones(size, dtype=np.uint8).tofile(scratch)
        scratch.unlink()
    phases: dict[str, list[Future]] = {"simulate": [], "train": []}
    with parsl.load(ParslConfig(executors=[executor], run_dir=str(run_dir.path / "parsl"))), \
            ProgressReporter(futures_status(phases)):
        warm_up_app = python_app(tasks.warm_up)
        meter = CpuMeter()
        for future in [warm_up_app(None, size) for _ in range(4 * (config.sim_workers or cores))]:
            meter.task_pids.add(future.result())  # untimed: workers started, task module and torch imported
        setup = time.perf_counter() - setup_start
        logger.info(f"Parsl workers warmed up in {setup:.1f} s; {config.num_sims} simulations start")
        simulate_app = python_app(tasks.simulate_arrays if config.data_path == "futures" else tasks.simulate_to_files)
        train_app = python_app(tasks.train_on_arrays if config.data_path == "futures" else tasks.train_from_files)
        extra = () if config.data_path == "futures" else (str(data_dir),)
        start = time.perf_counter()
        phases["simulate"] = [simulate_app(i, config.grid_size, config.num_steps, config.sim_sleep, *extra) for i in range(config.num_sims)]
        sims = [f.result() for f in phases["simulate"]]
        sim_run = time.perf_counter() - start
        logger.info(f"Simulations done in {sim_run:.1f} s; {len(kernels)} trainers start")
        meter.start()
        start = time.perf_counter()
        if config.data_path == "futures":
            phases["train"] = [train_app(sims, config.train_settings(k)) for k in kernels]  # Parsl pickles the arrays to each trainer
            sim_io = None
        else:
            phases["train"] = [train_app([paths for paths, _ in sims], config.train_settings(k)) for k in kernels]
            sim_io = _mean([io for _, io in sims])
        trained = [_ParslResult(f.result()) for f in phases["train"]]
        train_run = time.perf_counter() - start
        train_cpu = meter.stop()
        logger.info(f"Training done in {train_run:.1f} s")
    return _report(config, nodes, setup, sim_run, sim_io, train_run, trained, train_cpu)


def run_ray(config: Config) -> RunReport:
    """The ray path: Ray tasks and object refs on a local Ray instance (one CPU per task)."""
    import ray

    cores = os.cpu_count() or 1
    setup_start = time.perf_counter()
    size = data_bytes(config.num_sims, config.grid_size, config.num_steps)
    temp_dir = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit in 107 bytes
    ray.init(num_cpus=config.sim_workers or cores, include_dashboard=False, log_to_driver=False, object_store_memory=2 * size + 256 * 2**20,
             _temp_dir=temp_dir, runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}})
    try:
        remote: Any = ray.remote  # Ray's stubs type each task by its signature; these are called as plain tasks
        warm_up, simulate_task, train_task = remote(tasks.warm_up), remote(tasks.simulate_to_ray), remote(tasks.train_from_ray)
        meter = CpuMeter(task_pids=set(ray.get([warm_up.remote(None, size) for _ in range(4 * (config.sim_workers or cores))])))
        scratch = ray.put(np.ones(size, dtype=np.uint8))  # the object store's memory: written once, then freed
        del scratch
        setup = time.perf_counter() - setup_start
        start = time.perf_counter()
        sims = ray.get([simulate_task.remote(i, config.grid_size, config.num_steps, config.sim_sleep) for i in range(config.num_sims)])
        sim_run = time.perf_counter() - start
        refs = [ref for (ref,), _ in sims]
        meter.start()
        start = time.perf_counter()
        trained = [_ParslResult(r) for r in ray.get([train_task.remote(refs, config.train_settings(k)) for k in config.trainer_kernels])]
        train_run = time.perf_counter() - start
        train_cpu = meter.stop()
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    return _report(config, 1, setup, sim_run, _mean([io for _, io in sims]), train_run, trained, train_cpu)


@dataclass
class _ParslResult:
    """Gives a Parsl app's (or Ray task's) return value the shape of a task Result for ``_report``."""

    value: Any
    success: bool = True
    failure_info: Any = None


def append_csv(report: RunReport, config: Config, path: Path) -> None:
    """Append the run's row to the timing table at ``path`` (its header first if new)."""
    new = not path.exists()
    with open(path, "a", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(report.csv_row(config))
