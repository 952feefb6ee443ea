"""GPR-steered Ackley search: tasks reordered by a Gaussian-process model while they wait, and worker
pools that join the same queue mid-run (a reproduction of the EMEWS task-database example).
"""

from typing import TYPE_CHECKING

from dragon_campaign.apps import Application
from dragon_campaign.lazy import lazy_exports

APP = Application("dragon_campaign.apps.ackley", example="launchers/configs/ackley.yaml", resumes=True)  # the launcher's plug-in entry (pyproject.toml)

_EXPORTS = {
    "Config": "dragon_campaign.apps.ackley.config",
    "PoolSpec": "dragon_campaign.apps.ackley.config",
    "default_pools": "dragon_campaign.apps.ackley.config",
    "ackley": "dragon_campaign.apps.ackley.function",
    "evaluate": "dragon_campaign.apps.ackley.function",
    "fit_gpr": "dragon_campaign.apps.ackley.gpr",
    "run": "dragon_campaign.apps.ackley.app",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from dragon_campaign.apps.ackley.app import run  # noqa: F401
    from dragon_campaign.apps.ackley.config import Config, PoolSpec, default_pools  # noqa: F401
    from dragon_campaign.apps.ackley.function import ackley, evaluate  # noqa: F401
    from dragon_campaign.apps.ackley.gpr import fit_gpr  # noqa: F401

__getattr__ = lazy_exports(__name__, _EXPORTS)
