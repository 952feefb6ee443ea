"""Versioned model weights in the store: trainers publish, inference workers read the newest version.

A version is written tensor by tensor (raw buffers, no pickling of weights), then its index, then the
``latest`` pointer, so a reader never sees a half-written version. Versions are kept until deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ddict_store.store import Namespace

LATEST = "latest"


def _models(namespace: Namespace, name: str) -> Namespace:
    return namespace.namespace("models", name)


def publish_model(namespace: Namespace, name: str, state_dict: Mapping[str, Any], version: int | None = None) -> int:
    """Store a state dict as a new version (default: the latest version + 1) and return its number."""
    models = _models(namespace, name)
    if version is None:
        version = models.get(LATEST, -1) + 1
    elif version < 0:
        raise ValueError(f"Model versions are non-negative integers, got {version}")
    prefix = f"v{version}"
    for tensor_name, tensor in state_dict.items():
        models.put(f"{prefix}/{tensor_name}", tensor)
    models.put(f"{prefix}/index", list(state_dict))
    if version > models.get(LATEST, -1):
        models.put(LATEST, version)
    return version


def model(namespace: Namespace, name: str, version: int, map_location: str | None = None) -> dict[str, Any]:
    """The state dict of one version. Raises KeyError if it was never published."""
    models = _models(namespace, name)
    try:
        names = models.get(f"v{version}/index")
    except KeyError:
        raise KeyError(f"Model {name!r} has no version {version}") from None
    return {tensor: models.get(f"v{version}/{tensor}", map_location=map_location) for tensor in names}


def latest_model(namespace: Namespace, name: str, map_location: str | None = None) -> tuple[int, dict[str, Any]]:
    """The newest version and its state dict. Raises KeyError if none was published."""
    try:
        version = _models(namespace, name).get(LATEST)
    except KeyError:
        raise KeyError(f"No version of model {name!r} has been published") from None
    return version, model(namespace, name, version, map_location)


def model_versions(namespace: Namespace, name: str) -> list[int]:
    """Every published version, oldest first."""
    keys = _models(namespace, name).keys()
    return sorted({int(k.split("/")[0][1:]) for k in keys if k.startswith("v") and k.endswith("/index")})
