"""ML-guided molecular design: search a space of small molecules for high ionization potentials.

CPU workers compute GFN2-xTB ionization potentials (``.simulate``); GPU workers (CPU where there is
none) train a bootstrap ensemble of message-passing networks (``.mpnn``) and rank the whole search
space (``.space``), whose graph features live in the store in chunks; the thinker (``.thinker``)
steers with one of four policies: random, batch, streaming or interleaved.

The entry points are imported on first use, so that a trainer at another site can import
``.tasks`` without Dragon (importing Dragon replaces ``multiprocessing``, which breaks Parsl's workers).
"""

from typing import TYPE_CHECKING

from dragon_campaign.apps import Application
from dragon_campaign.lazy import lazy_exports

APP = Application("dragon_campaign.apps.moldesign", example="launchers/configs/moldesign-polaris.yaml",
                  checkpoints=True, resumes=True, proxystore=True)  # the launcher's plug-in entry (pyproject.toml)

_EXPORTS = {"Config": "dragon_campaign.apps.moldesign.config", "default_pools": "dragon_campaign.apps.moldesign.config",
            "run": "dragon_campaign.apps.moldesign.app"}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from dragon_campaign.apps.moldesign.app import run  # noqa: F401
    from dragon_campaign.apps.moldesign.config import Config, default_pools  # noqa: F401

__getattr__ = lazy_exports(__name__, _EXPORTS)
