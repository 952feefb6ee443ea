"""Turn values into (kind, header, raw bytes) and back, without pickling array data.

numpy arrays and torch tensors travel as their raw buffer plus dtype and shape (non-contiguous inputs are
made contiguous once, 0-d arrays keep their shape, tensors remember their device); anything else is
pickled with protocol 5. Objects that cannot be pickled raise :class:`UnsupportedTypeError` naming the type.
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ddict_store.errors import UnsupportedTypeError

PICKLE_PROTOCOL = 5


@dataclass(frozen=True)
class Encoded:
    """A value as raw bytes (``data``, a flat uint8 view) plus what is needed to rebuild it."""

    kind: str  # "numpy", "torch" or "pickle"
    header: tuple
    data: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # never import torch just to find out
    return torch is not None and isinstance(value, torch.Tensor)


def encode(value: Any) -> Encoded:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise UnsupportedTypeError("numpy arrays of dtype object cannot be stored as raw buffers; store a list instead")
        array = value if value.flags.c_contiguous else value.copy(order="C")  # ascontiguousarray would make 0-d 1-d
        return Encoded("numpy", (array.dtype.str, array.shape), array.reshape(-1).view(np.uint8))
    if _is_tensor(value):
        tensor = value.detach()
        device = str(tensor.device)
        flat = tensor.cpu().contiguous().reshape(-1)
        data = flat.view(sys.modules["torch"].uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
        return Encoded("torch", (str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape), device), data)
    try:
        payload = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
    except Exception as exc:
        raise UnsupportedTypeError(f"Cannot store an object of type {type(value).__module__}.{type(value).__qualname__}: {exc}") from exc
    return Encoded("pickle", (), np.frombuffer(payload, dtype=np.uint8))


def decode(kind: str, header: tuple, data: np.ndarray, map_location: str | None = None) -> Any:
    """Rebuild a value from its bytes; ``data`` must be owned by the caller (it is not copied again)."""
    if kind == "numpy":
        dtype, shape = header
        return data.view(np.dtype(dtype)).reshape(shape)
    if kind == "torch":
        import torch

        dtype, shape, device = header
        tensor = torch.from_numpy(data).view(getattr(torch, dtype)).reshape(shape)
        target = map_location or device
        if target != "cpu" and not (target.startswith("cuda") and torch.cuda.is_available()):
            target = "cpu"  # the writer's GPU is not visible here
        return tensor.to(target) if target != "cpu" else tensor
    if kind == "pickle":
        return pickle.loads(data)
    raise ValueError(f"Unknown stored kind {kind!r}")
