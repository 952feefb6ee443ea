"""Parameters of the molecular-design campaign and the pools it runs on by default."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dragon_campaign import WorkerPool
from dragon_campaign.apps.moldesign.space import load_search_space


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
    search_space: str | None = Field(None, description="File of SMILES, one a line (default: the bundled space)")
    space_limit: int | None = Field(None, ge=1, description="Use only the first N molecules of the space")
    chunk_size: int = Field(2048, ge=1, description="Molecules per inference task")
    seed: int = Field(0, description="Seed of the random order, the bootstrap and the networks")
    train_pool: str | None = Field(None, description="Pool that trains (default: gpu, else cpu); may be an executor pool at another site")
    infer_pool: str | None = Field(None, description="Dragon pool that infers (default: gpu, else cpu); it reads the store")

    def space(self) -> tuple[str, ...]:
        """The molecules to search, in order."""
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
