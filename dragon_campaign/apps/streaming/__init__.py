"""Streaming optimizer: the built-in default campaign, a (1+1)-style evolution strategy on the Rastrigin function.

Every time an evaluation finishes, the thinker proposes a new point by perturbing the best point found so
far, so the workers never idle and the search follows the newest information (the streaming policy).
"""

from dragon_campaign.apps.streaming.app import Config, run
from dragon_campaign.apps.streaming.tasks import rastrigin

__all__ = ["Config", "rastrigin", "run"]
