"""ML-guided molecular design: search a space of small molecules for high ionization potentials.

CPU workers compute GFN2-xTB ionization potentials (:mod:`.simulate`); GPU workers (CPU where there is
none) train a bootstrap ensemble of message-passing networks (:mod:`.mpnn`) and rank the whole search
space (:mod:`.space`), whose graph features live in the store in chunks; the thinker (:mod:`.thinker`)
steers with one of four policies: random, batch, streaming or interleaved.

The entry points are imported on first use, so that a trainer at another site can import
:mod:`.tasks` without Dragon (importing Dragon replaces ``multiprocessing``, which breaks Parsl's workers).
"""

from typing import Any

__all__ = ["Config", "default_pools", "run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from dragon_campaign.apps.moldesign import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
