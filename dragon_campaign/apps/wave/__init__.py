"""Producer-consumer workflow: wave simulations on CPU workers feed CNN trainers on GPU workers,
over one of four data paths (Parsl futures, files, ddict_store, DDict proxies). See ``workflow``.

``Config`` and ``run`` are imported on first use: Parsl workers import this package's ``tasks`` and
must not import Dragon."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Config", "run"]


def __getattr__(name: str) -> Any:
    modules = {"Config": "dragon_campaign.apps.wave.workflow", "run": "dragon_campaign.apps.wave.app"}
    if name not in modules:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(modules[name]), name)
