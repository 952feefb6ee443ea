"""The molecular-design campaign: configuration, set-up of the store and pools, and the run's outputs."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ddict_store import DDictStore
from dragon_campaign import ConfigError, DragonQueues, DragonTaskServer, ExecutorPool, RunDirectory, WorkerPool
from dragon_campaign.apps.moldesign import tasks
from dragon_campaign.apps.moldesign.outputs import write_outputs
from dragon_campaign.apps.moldesign.space import load_search_space
from dragon_campaign.apps.moldesign.thinker import POLICIES
from dragon_campaign.bridges import ProxyStoreSettings, proxy_stores
from dragon_campaign.campaign import run_campaign
from dragon_campaign.checkpoint import Checkpointer

Pool = WorkerPool | ExecutorPool
TOPICS = ("simulate", "features", "train", "infer")


class Config(BaseModel):
    """Parameters of the molecular-design campaign (the ``app:`` section of a config file)."""

    model_config = ConfigDict(extra="forbid")

    budget: int = Field(24, ge=1, description="Number of simulations (xTB ionization potentials)")
    policy: Literal["random", "batch", "streaming", "interleaved"] = Field("interleaved", description="Steering policy")
    retrain_every: int = Field(8, ge=2, description="streaming/interleaved: retrain after this many new results")
    batch_size: int = Field(8, ge=1, description="batch: simulations per batch (the model retrains between batches)")
    queue_depth: int = Field(2, ge=0, description="interleaved: waiting simulations kept per worker, reordered after retraining")
    ensemble: int = Field(4, ge=1, description="Networks in the bootstrap ensemble")
    epochs: int = Field(40, ge=1, description="Training epochs per network")
    kappa: float = Field(1.0, ge=0, description="Weight of the ensemble spread in the upper confidence bound")
    ml_slots: int = Field(1, ge=0, description="Simulation workers lent to training while it runs (0 on GPU nodes)")
    threshold_ev: float = Field(14.5, description="IP (eV, GFN2-xTB scale) above which a molecule counts as found (about 5% of the bundled space)")
    solution_count: int = Field(10, ge=1, description="Time to solution: wall time until this many molecules are above the threshold")
    adiabatic: bool = Field(False, description="Relax the cation too (adiabatic IP) instead of a vertical IP")
    search_space: Optional[str] = Field(None, description="File of SMILES, one a line (default: the bundled space)")
    space_limit: Optional[int] = Field(None, ge=1, description="Use only the first N molecules of the space")
    chunk_size: int = Field(2048, ge=1, description="Molecules per inference task")
    seed: int = Field(0, description="Seed of the random order, the bootstrap and the networks")
    train_pool: Optional[str] = Field(None, description="Pool that trains (default: gpu, else cpu); may be an executor pool at another site")
    infer_pool: Optional[str] = Field(None, description="Dragon pool that infers (default: gpu, else cpu); it reads the store")

    def space(self) -> tuple[str, ...]:
        return load_search_space(self.search_space)[: self.space_limit]

    @model_validator(mode="after")
    def _budget_fits_the_space(self) -> Config:
        try:
            size = len(self.space())
        except FileNotFoundError as exc:
            raise ValueError(str(exc)) from None
        if self.budget > size:
            raise ValueError(f"budget ({self.budget} simulations) exceeds the search space ({size} molecules)")
        return self


def default_pools(config: Config | None = None) -> dict[str, WorkerPool]:
    """A worker per core for simulations; one per GPU for learning (one CPU worker where there is none)."""
    single_thread = {"OMP_NUM_THREADS": "1"}
    return {"cpu": WorkerPool(workers=os.cpu_count() or 1, env=single_thread),
            "gpu": WorkerPool(gpus=True, cpu_fallback_workers=1, env=single_thread)}


def _featurize_space(queues: DragonQueues, space: tuple[str, ...], chunk_size: int, store_handle: str, namespace: str) -> int:
    """Have the CPU workers featurize the space into the store, one task per chunk; returns the number of chunks."""
    starts = range(0, len(space), chunk_size)
    for chunk, start in enumerate(starts):
        queues.send_inputs(chunk, space[start:start + chunk_size], store_handle, namespace, method="featurize", topic="features")
    failed = [r.failure_info.exception for r in (queues.get_result("features") for _ in starts) if not r.success]
    if failed:
        raise RuntimeError(f"Could not featurize {len(failed)} chunk(s) of the search space: {failed[0]}")
    return len(starts)


@dataclass(frozen=True)
class Routing:
    """Which pool runs which method; training may run outside Dragon, the others read the store."""

    sim_pool: str
    train_pool: str
    infer_pool: str
    train_remote: bool

    @classmethod
    def of(cls, config: Config, pools: dict[str, Pool]) -> Routing:
        sim_pool = "cpu" if "cpu" in pools else next(iter(pools))
        ml_pool = "gpu" if "gpu" in pools else sim_pool
        train_pool, infer_pool = config.train_pool or ml_pool, config.infer_pool or ml_pool
        for key, name in (("train_pool", train_pool), ("infer_pool", infer_pool)):
            if name not in pools:
                raise ConfigError(f"app.{key}: no pool named {name!r} (pools: {', '.join(sorted(pools))})")
        for role, name in (("simulations", sim_pool), ("app.infer_pool", infer_pool)):
            if isinstance(pools[name], ExecutorPool):
                raise ConfigError(f"{role}: {name!r} is an executor pool, but these tasks read the store: use a Dragon pool")
        return cls(sim_pool, train_pool, infer_pool, isinstance(pools[train_pool], ExecutorPool))

    def methods(self) -> list[Any]:
        return [(tasks.simulate, {"pool": self.sim_pool}), (tasks.featurize, {"pool": self.sim_pool}),
                (tasks.train, {"pool": self.train_pool}), (tasks.infer, {"pool": self.infer_pool})]


def run(config: Config, pools: dict[str, Pool], run_dir: RunDirectory, proxystore: ProxyStoreSettings | None = None,
        stop_after: float | None = None, resume: bool = False) -> dict[str, Any]:
    """Run the campaign and write its outputs into the run directory; returns the summary.

    SIGTERM, SIGINT or ``stop_after`` checkpoint the campaign into ``<run-dir>/checkpoint/`` (with the
    store's features and model versions) and raise :class:`~dragon_campaign.campaign.CampaignSuspended`.

    Args:
        proxystore: Per-topic ProxyStore backends (topics: simulate, features, train, infer). A training
            pool at another site returns the weights with each result, proxied by the train topic's backend.
        stop_after: Checkpoint and stop after this many seconds of campaign (e.g. before a job's walltime).
        resume: Carry on from the checkpoint in ``run_dir`` (same configuration, any pools).
    """
    space = config.space()
    routing = Routing.of(config, pools)
    with DDictStore(buffer_bytes_per_node=512 * 2**20) as store, ExitStack() as stack:
        namespace = f"moldesign/{run_dir.path.name}"
        checkpointer = Checkpointer(run_dir, store, namespaces=[namespace])
        saved = checkpointer.load() if resume else None  # features and models come back with the store
        proxies = stack.enter_context(proxy_stores(proxystore, f"moldesign-{run_dir.path.name}")) if proxystore else {}
        queues = DragonQueues(topics=list(TOPICS), **proxies)
        server = DragonTaskServer(routing.methods(), queues, pools=pools, run_dir=run_dir).start()
        server.watch(store.service_puids(), "a DDict process of the store")
        try:
            chunks = -(-len(space) // config.chunk_size) if saved else _featurize_space(queues, space, config.chunk_size, store.handle, namespace)
        except BaseException:
            server.stop()
            raise
        sim_workers = server.worker_count(routing.sim_pool)
        thinker = POLICIES[config.policy](queues, config, space, chunks, sim_workers, store.handle, namespace, routing.train_remote)
        run_campaign(thinker, server, timeout=stop_after, checkpointer=checkpointer, resume_from=saved)
    summary = write_outputs(thinker, config, run_dir)
    summary["space_size"] = len(space)
    Path(run_dir.path, "summary.json").write_text(json.dumps(summary, indent=2, default=_plain))
    return summary


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)
