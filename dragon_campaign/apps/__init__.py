"""Applications, written only against the public API of ``dragon_campaign``.

Each application package has a ``config`` module with ``Config`` (a pydantic model of its parameters) and
optionally ``default_pools(config)`` (the pools used when the configuration names none), and an ``app``
module with ``run(config, pools, run_dir) -> dict`` (runs the campaign, returns a summary). The launcher
reads ``config`` before the Dragon runtime starts and imports ``app`` only inside it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple


class Application(NamedTuple):
    """What the launcher knows of an application before it imports it."""

    package: str
    example: str | None = None  # a configuration file to start from, relative to the repository
    checkpoints: bool = False  # run() takes stop_after and resume
    proxystore: bool = False  # run() takes per-topic ProxyStore settings

    def config_module(self) -> ModuleType:
        """``Config`` and ``default_pools``: cheap to import, no Dragon."""
        return importlib.import_module(f"{self.package}.config")

    def app_module(self) -> ModuleType:
        """``run``: imports Dragon; only in the runtime's head process."""
        return importlib.import_module(f"{self.package}.app")


APPLICATIONS: dict[str, Application] = {
    "ackley": Application("dragon_campaign.apps.ackley", example="launchers/configs/ackley.yaml"),
    "moldesign": Application("dragon_campaign.apps.moldesign", example="launchers/configs/moldesign-polaris.yaml",
                             checkpoints=True, proxystore=True),
    "streaming": Application("dragon_campaign.apps.streaming"),
    "wave": Application("dragon_campaign.apps.wave"),
}
DEFAULT_APPLICATION = "moldesign"
