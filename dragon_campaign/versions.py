"""The versions of this project and of the packages a run depends on: ``--version``, the run report."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

# What a result depends on, in the order people look for them
PACKAGES = ("dragon-campaign", "dragonhpc", "proxystore", "parsl", "globus-compute-sdk", "torch", "rdkit", "tblite", "numpy",
            "pydantic")


def installed_versions(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """``NAME VERSION`` of each of ``packages`` that is installed."""
    found = []
    for package in packages:
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    return found


def version_line() -> str:
    """What ``dragon-campaign --version`` prints."""
    return f"{', '.join(installed_versions(PACKAGES[:2]))}; Python {platform.python_version()}"
