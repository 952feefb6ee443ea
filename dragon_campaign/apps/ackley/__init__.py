"""GPR-steered Ackley search: tasks reordered by a Gaussian-process model while they wait, and worker
pools that join the same queue mid-run (a reproduction of the EMEWS task-database example)."""

from dragon_campaign.apps.ackley.app import default_pools, run
from dragon_campaign.apps.ackley.config import Config, PoolSpec
from dragon_campaign.apps.ackley.function import ackley, evaluate
from dragon_campaign.apps.ackley.gpr import fit_gpr

__all__ = ["Config", "PoolSpec", "ackley", "default_pools", "evaluate", "fit_gpr", "run"]
