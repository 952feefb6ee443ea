"""Streaming optimizer: a (1+1)-style evolution strategy on the Rastrigin function.

Every time an evaluation finishes, the thinker proposes a new point by perturbing the best point found so
far, so the workers never idle and the search follows the newest information (the streaming policy).
"""

from typing import TYPE_CHECKING

from dragon_campaign.apps import Application
from dragon_campaign.lazy import lazy_exports

APP = Application("dragon_campaign.apps.streaming", resumes=True)  # the launcher's plug-in entry (pyproject.toml)

_EXPORTS = {"Config": "dragon_campaign.apps.streaming.config", "rastrigin": "dragon_campaign.apps.streaming.tasks",
            "run": "dragon_campaign.apps.streaming.app"}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from dragon_campaign.apps.streaming.app import run  # noqa: F401
    from dragon_campaign.apps.streaming.config import Config  # noqa: F401
    from dragon_campaign.apps.streaming.tasks import rastrigin  # noqa: F401

__getattr__ = lazy_exports(__name__, _EXPORTS)
