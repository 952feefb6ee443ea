"""ML-guided molecular design: search a space of small molecules for high ionization potentials.

CPU workers compute GFN2-xTB ionization potentials (:mod:`.simulate`); GPU workers (CPU where there is
none) train a bootstrap ensemble of message-passing networks (:mod:`.mpnn`) and rank the whole search
space (:mod:`.space`), whose graph features live in the store in chunks; the thinker (:mod:`.thinker`)
steers with one of four policies: random, batch, streaming or interleaved.
"""

from dragon_campaign.apps.moldesign.app import Config, default_pools, run

__all__ = ["Config", "default_pools", "run"]
