"""The molecular-design campaign: set-up of the store and pools, the run, and its outputs."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ddict_store import DDictStore
from dragon_campaign import (
    Checkpointer,
    ConfigError,
    DragonQueues,
    DragonTaskServer,
    ExecutorPool,
    ProxyStoreSettings,
    RunDirectory,
    WorkerPool,
    busy_fractions,
    idle_while_tasks_wait,
    proxy_stores,
    read_results,
    run_campaign,
)
from dragon_campaign.apps.moldesign import tasks
from dragon_campaign.apps.moldesign.config import Config
from dragon_campaign.apps.moldesign.outputs import write_outputs
from dragon_campaign.apps.moldesign.thinker import POLICIES

Pool = WorkerPool | ExecutorPool
TOPICS = ("simulate", "features", "train", "infer")


def _featurize_space(queues: DragonQueues, space: tuple[str, ...], chunk_size: int, store_handle: str, namespace: str) -> int:
    """Have the CPU workers featurize the space into the store, one task per chunk; returns the number of chunks."""
    starts = range(0, len(space), chunk_size)
    for chunk, start in enumerate(starts):
        queues.send_inputs(chunk, space[start:start + chunk_size], store_handle, namespace, method="featurize", topic="features")
    failed = [r.failure_reason for r in (queues.get_result("features") for _ in starts) if not r.success]
    if failed:
        raise RuntimeError(f"Could not featurize {len(failed)} chunk(s) of the search space: {failed[0]}")
    return len(starts)


@dataclass(frozen=True)
class Routing:
    """Which pools run which method; training may run outside Dragon, the others read the store.

    When simulation workers are lent to learning (``ml_slots`` > 0: nodes without GPUs) and the config names
    no pool for it, training and inference may also run on the simulation pool, so the lent workers do the
    learning instead of idling beside a single CPU-fallback worker.
    """

    sim_pool: str
    train_pools: tuple[str, ...]
    infer_pools: tuple[str, ...]
    train_remote: bool

    @classmethod
    def of(cls, config: Config, pools: dict[str, Pool]) -> Routing:
        """Check the configuration's pools against the pools there are (ConfigError names what does not fit)."""
        sim_pool = "cpu" if "cpu" in pools else next(iter(pools))
        ml_pool = "gpu" if "gpu" in pools else sim_pool
        train_pool, infer_pool = config.train_pool or ml_pool, config.infer_pool or ml_pool
        for key, name in (("train_pool", train_pool), ("infer_pool", infer_pool)):
            if name not in pools:
                raise ConfigError(f"app.{key}: no pool named {name!r} (pools: {', '.join(sorted(pools))})")
        for role, name in (("simulations", sim_pool), ("app.infer_pool", infer_pool)):
            if isinstance(pools[name], ExecutorPool):
                raise ConfigError(f"{role}: {name!r} is an executor pool, but these tasks read the store: use a Dragon pool")
        train_remote = isinstance(pools[train_pool], ExecutorPool)
        spill = (sim_pool,) if config.ml_slots > 0 and ml_pool != sim_pool else ()
        train_pools = (train_pool,) + (spill if config.train_pool is None and not train_remote else ())
        infer_pools = (infer_pool,) + (spill if config.infer_pool is None else ())
        return cls(sim_pool, train_pools, infer_pools, train_remote)

    def methods(self) -> list[Any]:
        """The methods and the pools each may run on, for the task server."""
        # featurize, train and infer write the store, which ends with the job: after a resume they run again
        return [(tasks.simulate, {"pool": self.sim_pool}), (tasks.featurize, {"pool": self.sim_pool, "memoize": False}),
                (tasks.train, {"pool": list(self.train_pools), "memoize": False}),
                (tasks.infer, {"pool": list(self.infer_pools), "memoize": False})]


def run(config: Config, pools: dict[str, Pool], run_dir: RunDirectory, proxystore: ProxyStoreSettings | None = None,
        stop_after: float | None = None, resume: bool = False) -> dict[str, Any]:
    """Run the campaign and write its outputs into the run directory; returns the summary.

    SIGTERM, SIGINT or ``stop_after`` checkpoint the campaign into ``<run-dir>/checkpoint/`` (with the
    store's features and model versions) and raise ``CampaignSuspended``. A job that ended without one
    (SIGKILL, a lost node) resumes from the journal: the thinker's latest snapshot, the simulations it
    waited for requeued or delivered again; features and models are computed again.

    Args:
        proxystore: Per-topic ProxyStore backends (topics: simulate, features, train, infer). A training
            pool at another site returns the weights with each result, proxied by the train topic's backend.
        stop_after: Checkpoint and stop after this many seconds of campaign (e.g. before a job's walltime).
        resume: Carry on in ``run_dir`` (same configuration, any pools): from its checkpoint if the last job
            wrote one, else from its journal.
    """
    started = time.monotonic()
    space = config.space()
    routing = Routing.of(config, pools)
    with DDictStore(buffer_bytes_per_node=512 * 2**20) as store, ExitStack() as stack:
        namespace = f"moldesign/{run_dir.path.name}"
        checkpointer = Checkpointer(run_dir, store, namespaces=[namespace])
        saved = checkpointer.load() if resume and checkpointer.current() else None  # features and models come back with the store
        if proxystore is not None:
            queues = DragonQueues(topics=list(TOPICS), **stack.enter_context(proxy_stores(proxystore, f"moldesign-{run_dir.path.name}")))
        else:
            queues = DragonQueues(topics=list(TOPICS))
        server = DragonTaskServer(routing.methods(), queues, pools=pools, run_dir=run_dir).start()
        server.watch(store.service_puids(), "a DDict process of the store")
        try:
            chunks = -(-len(space) // config.chunk_size) if saved else _featurize_space(queues, space, config.chunk_size, store.handle, namespace)
        except BaseException:
            server.stop()
            raise
        sim_workers = server.worker_count(routing.sim_pool)
        thinker = POLICIES[config.policy](queues, config, space, chunks, sim_workers, store.handle, namespace, routing.train_remote)
        setup = time.monotonic() - started
        run_campaign(thinker, server, timeout=stop_after, checkpointer=checkpointer, resume_from=saved, resume=resume)
    summary = write_outputs(thinker, config, run_dir)
    results = read_results(run_dir.results_path)
    summary.update(space_size=len(space), wall_s=time.monotonic() - started, setup_s=setup,
                   worker_busy_fraction=busy_fractions(results), worker_idle_while_tasks_wait=idle_while_tasks_wait(results))
    Path(run_dir.path, "summary.json").write_text(json.dumps(summary, indent=2, default=_plain))
    return summary


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)
