"""Parameters of the producer-consumer workflow and the pools it runs on by default."""

from __future__ import annotations

import os
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dragon_campaign import WorkerPool

DataPath = Literal["futures", "files", "ddict", "proxystore", "ray"]


class TrainSettings(NamedTuple):
    """How one trainer trains (a task argument)."""

    kernel_size: int
    seed: int = 0
    channels: int = 16
    threads: int = 0  # torch threads; 0 leaves torch's default (every core). Trainers sharing a node's
    # cores should split them: two trainers of two threads each on two cores ran 2-3x slower than of one
    # thread each here, their OpenMP barriers waiting on descheduled threads.


class Config(BaseModel):
    """Parameters of the producer-consumer workflow (the ``app:`` section, or command-line flags)."""

    model_config = ConfigDict(extra="forbid")

    num_sims: int = Field(4, ge=1, description="Number of simulations")
    grid_size: int = Field(64, ge=4, description="Grid points per side")
    num_steps: int = Field(20, ge=1, description="Time steps per simulation (one training pair each)")
    sim_sleep: float = Field(0.5, ge=0, description="Emulated compute per step, seconds (0.5 in the original study)")
    kernel_sizes: list[int] = Field(default_factory=lambda: [3, 5, 7, 9], description="Kernel sizes of the trainers (cycled)")
    num_trainers: int | None = Field(None, ge=1, description="Trainers (default: one per kernel size)")
    data_path: DataPath = Field("ddict", description="How the data moves from simulations to trainers (see the workflow module)")
    sim_workers: int | None = Field(None, ge=1, description="Simulation workers (default: one per core)")
    channels: int = Field(16, ge=1, description="Channels of the CNN's hidden layers")
    proxy_threshold: int = Field(100_000, ge=0, description="proxystore path: results above this many bytes travel as proxies")
    seed: int = Field(0, description="Seed of the trainers' initial weights")
    trainer_threads: int | None = Field(None, ge=1, description="Torch threads per trainer (default: the node's cores divided among the trainers)")
    keep_data: bool = Field(True, description="ddict and proxystore paths: each simulation also writes its arrays to <run-dir>/data "
                            "(after its timed write), so that a killed run resumes without simulating again what finished; "
                            "the timing study (launchers/producer_consumer.py, comparisons) turns it off")
    sim_ranks: int = Field(1, ge=1, description="proxystore path: MPI ranks per simulation, each computing a band of the grid (mpi4py, mpiexec)")

    @model_validator(mode="after")
    def _ranks_need_the_proxystore_path(self) -> Config:
        if self.sim_ranks > 1 and self.data_path != "proxystore":
            raise ValueError("sim_ranks > 1 needs data_path proxystore: rank 0 returns the arrays, and the task queue proxies them through the DDict")
        return self

    @property
    def trainer_kernels(self) -> list[int]:
        """The kernel size of each trainer."""
        count = self.num_trainers or len(self.kernel_sizes)
        return [self.kernel_sizes[i % len(self.kernel_sizes)] for i in range(count)]

    def train_settings(self, kernel_size: int) -> TrainSettings:
        """One trainer's settings; trainers running side by side on the CPU split the node's cores."""
        threads = self.trainer_threads or max(1, (os.cpu_count() or 1) // len(self.trainer_kernels))
        return TrainSettings(kernel_size, self.seed, self.channels, threads)


def default_pools(config: Config) -> dict[str, WorkerPool]:
    """A simulation worker per core; a trainer per GPU (CPU workers where there is none)."""
    cores = os.cpu_count() or 1
    return {
        "cpu": WorkerPool(workers=config.sim_workers or cores),
        "gpu": WorkerPool(gpus=True, cpu_fallback_workers=min(len(config.trainer_kernels), cores)),
    }
