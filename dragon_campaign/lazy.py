"""Names a package exports, imported from their modules on first use (PEP 562).

The launcher checks a configuration, and Parsl workers run an application's tasks, without importing Dragon
(importing ``dragon`` takes seconds and replaces parts of ``multiprocessing``): packages export their names
lazily, so importing a package costs only what its caller uses.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``name`` from ``exports[name]`` when first read."""
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value
    return __getattr__
