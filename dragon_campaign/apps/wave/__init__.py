"""Producer-consumer workflow: wave simulations on CPU workers feed CNN trainers on GPU workers,
over one of four data paths (Parsl futures, files, ddict_store, DDict proxies). See ``workflow``.

Names are imported on first use: Parsl workers import this package's ``tasks`` and must not import Dragon.
"""

from typing import TYPE_CHECKING

from dragon_campaign.apps import Application
from dragon_campaign.lazy import lazy_exports

APP = Application("dragon_campaign.apps.wave", resumes=True)  # the launcher's plug-in entry (pyproject.toml)

_EXPORTS = {"Config": "dragon_campaign.apps.wave.config", "default_pools": "dragon_campaign.apps.wave.config",
            "run": "dragon_campaign.apps.wave.app"}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from dragon_campaign.apps.wave.app import run  # noqa: F401
    from dragon_campaign.apps.wave.config import Config, default_pools  # noqa: F401

__getattr__ = lazy_exports(__name__, _EXPORTS)
