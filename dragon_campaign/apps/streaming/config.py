"""Parameters of the streaming optimizer."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Config(BaseModel):
    """Parameters of the streaming optimizer (the ``app:`` section of a config file)."""

    model_config = ConfigDict(extra="forbid")

    budget: int = Field(200, ge=1, description="Number of function evaluations")
    dimensions: int = Field(4, ge=1, description="Dimensions of the Rastrigin function")
    task_sleep: float = Field(0.02, ge=0, description="Seconds each evaluation sleeps to emulate compute")
    step: float = Field(0.5, gt=0, description="Standard deviation of the Gaussian perturbation")
    bound: float = Field(5.12, gt=0, description="Initial points are drawn from [-bound, bound] in each dimension")
    seed: int = Field(0, description="Random seed of the search")
