"""Applications: campaigns the launcher runs by name (``dragon-campaign run --app NAME``).

An application is a package with a ``config`` module (``Config``, a pydantic model of its parameters, and
optionally ``default_pools(config)``, the pools used when the configuration names none) and an ``app``
module with either ``campaign(run) -> Campaign`` (the thinker and the server; the launcher runs them,
as for ``dragon-campaign run my_campaign.py``) or, for full control, ``run(config, pools, run_dir,
**options) -> dict`` (runs the campaign, returns a summary). The launcher reads ``config`` before the
Dragon runtime starts and imports ``app`` only inside it.

Applications are plug-ins: an installed distribution names an ``Application`` in the entry-point group
``dragon_campaign.apps`` (the built-in ones do so in this project's ``pyproject.toml``)::

    [project.entry-points."dragon_campaign.apps"]
    mysearch = "mysearch:APP"      # mysearch/__init__.py: APP = Application("mysearch")

``dragon-campaign apps`` lists what is installed; ``dragon-campaign new NAME`` writes such a package.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, NamedTuple

from pydantic import BaseModel

ENTRY_POINTS = "dragon_campaign.apps"
DEFAULT_APPLICATION = "moldesign"


class Application(NamedTuple):
    """What the launcher knows of an application before it imports its code."""

    package: str  # the importable package with the config and app modules
    example: str | None = None  # a configuration file to start from (shown in hints)
    checkpoints: bool = False  # run() takes stop_after (it checkpoints at a signal or a time limit)
    resumes: bool = False  # run() takes resume: it carries on from the run's checkpoint or journal
    proxystore: bool = False  # run() takes per-topic ProxyStore settings

    def config_module(self) -> ModuleType:
        """``Config`` and ``default_pools``: cheap to import, no Dragon."""
        return importlib.import_module(f"{self.package}.config")

    def config_class(self) -> type[BaseModel]:
        """The model of the ``app:`` section."""
        model: type[BaseModel] = self.config_module().Config
        return model

    def default_pools(self, config: BaseModel) -> dict[str, Any] | None:
        """The pools to use when the configuration names none (None: the launcher's default)."""
        chooser = getattr(self.config_module(), "default_pools", None)
        return None if chooser is None else dict(chooser(config))

    def runner(self) -> Callable[..., dict[str, Any]]:
        """The app module's ``run``, or its ``campaign`` run by the launcher; only in the runtime's head process."""
        module = importlib.import_module(f"{self.package}.app")
        if hasattr(module, "run"):
            run: Callable[..., dict[str, Any]] = module.run
            return run
        from dragon_campaign.cli.user_campaign import CampaignFunction

        return CampaignFunction(module.__name__).run

    def summary(self) -> str:
        """What the package's docstring says first."""
        return first_paragraph(importlib.import_module(self.package))


def first_paragraph(module: ModuleType) -> str:
    """The first paragraph of a module's docstring, on one line."""
    return " ".join((inspect.getdoc(module) or "").split("\n\n", 1)[0].split())


class BrokenApplication(NamedTuple):
    """An entry point of the group that could not be loaded: listed with its error, never run."""

    value: str
    error: str


def installed() -> dict[str, Application | BrokenApplication]:
    """The applications of every installed distribution, by entry-point name (cheap: no application code runs
    beyond each package's ``__init__``).
    """
    found: dict[str, Application | BrokenApplication] = {}
    for point in entry_points(group=ENTRY_POINTS):
        try:
            application = point.load()
        except Exception as exc:  # a plug-in that does not import must not take the launcher down
            found[point.name] = BrokenApplication(point.value, f"{type(exc).__name__}: {exc}")
            continue
        if isinstance(application, Application):
            found[point.name] = application
        else:
            found[point.name] = BrokenApplication(point.value, f"{point.value} is a {type(application).__name__}, not an Application")
    return found
