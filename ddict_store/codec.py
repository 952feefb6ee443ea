"""Turn values into (kind, header, raw bytes) and back, without pickling array data.

numpy arrays and torch tensors travel as their raw buffer plus dtype and shape (non-contiguous inputs are
made contiguous once, 0-d arrays keep their shape, tensors remember their device). A dict of numpy arrays
(``{"inputs": x, "outputs": y}``, like ``np.savez``) is one value: its arrays lie back to back, aligned, in
one buffer, so related arrays cost one write and one DDict entry. Anything else is pickled with protocol 5.
Objects that cannot be pickled raise ``UnsupportedTypeError`` naming the type.
"""

from __future__ import annotations

import functools
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ddict_store.errors import UnsupportedTypeError

PICKLE_PROTOCOL = 5
ALLOCATION_KIND = "allocation"  # raw bytes a writer put in managed memory itself, with a note (header[0])
ARRAY_ALIGNMENT = 64  # bytes; each array of a dict starts at a multiple of this


@dataclass(frozen=True)
class Encoded:
    """A value as raw bytes (``parts``: flat uint8 views, stored back to back) plus what rebuilds it."""

    kind: str  # "numpy", "torch", "arrays", "pickle" or ALLOCATION_KIND
    header: tuple
    parts: tuple[np.ndarray, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the encoded value."""
        return sum(int(part.nbytes) for part in self.parts)

    @functools.cached_property
    def data(self) -> np.ndarray:
        """All bytes in one flat array (joined once, for the inline and chunked placements)."""
        return self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)


def _contiguous(array: np.ndarray) -> np.ndarray:
    if array.dtype.hasobject:
        raise UnsupportedTypeError("numpy arrays of dtype object cannot be stored as raw buffers; store a list instead")
    return array if array.flags.c_contiguous else array.copy(order="C")  # ascontiguousarray would make 0-d 1-d


def _flat_bytes(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1).view(np.uint8)


def _padding(nbytes: int) -> int:
    return -nbytes % ARRAY_ALIGNMENT


def _encode_arrays(arrays: dict[str, np.ndarray]) -> Encoded:
    header, parts = [], []
    for name, array in arrays.items():
        array = _contiguous(array)
        header.append((name, array.dtype.str, array.shape))
        parts += [_flat_bytes(array), np.zeros(_padding(array.nbytes), np.uint8)]
    return Encoded("arrays", tuple(header), tuple(parts))


def _decode_arrays(header: Sequence[tuple], data: np.ndarray) -> dict[str, np.ndarray]:
    arrays, offset = {}, 0
    for name, dtype, shape in header:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        arrays[name] = data[offset:offset + nbytes].view(np.dtype(dtype)).reshape(shape)
        offset += nbytes + _padding(nbytes)
    return arrays


def _is_array_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(name, str) and isinstance(array, np.ndarray) for name, array in value.items())


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # never import torch just to find out
    return torch is not None and isinstance(value, torch.Tensor)


def encode(value: Any) -> Encoded:
    """Encode a value for the store: arrays and tensors as raw buffers with a header, other objects pickled."""
    if isinstance(value, np.ndarray):
        array = _contiguous(value)
        return Encoded("numpy", (array.dtype.str, array.shape), (_flat_bytes(array),))
    if _is_array_dict(value):
        return _encode_arrays(value)
    if _is_tensor(value):
        tensor = value.detach()
        device = str(tensor.device)
        flat = tensor.cpu().contiguous().reshape(-1)
        data = flat.view(sys.modules["torch"].uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
        return Encoded("torch", (str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape), device), (data,))
    try:
        payload = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
    except Exception as exc:
        raise UnsupportedTypeError(f"Cannot store an object of type {type(value).__module__}.{type(value).__qualname__}: {exc}") from exc
    return Encoded("pickle", (), (np.frombuffer(payload, dtype=np.uint8),))


def decode(kind: str, header: tuple, data: np.ndarray, map_location: str | None = None) -> Any:
    """Rebuild a value from its bytes; ``data`` must be owned by the caller (it is not copied again)."""
    if kind == "numpy":
        dtype, shape = header
        return data.view(np.dtype(dtype)).reshape(shape)
    if kind == "arrays":
        return _decode_arrays(header, data)
    if kind == "torch":
        import torch

        dtype, shape, device = header
        tensor = torch.from_numpy(data).view(getattr(torch, dtype)).reshape(shape)
        target = map_location or device
        if target != "cpu" and not (target.startswith("cuda") and torch.cuda.is_available()):
            target = "cpu"  # the writer's GPU is not visible here
        return tensor.to(target) if target != "cpu" else tensor
    if kind == "pickle":
        return pickle.loads(data.data)
    if kind == ALLOCATION_KIND:
        return data
    raise ValueError(f"Unknown stored kind {kind!r}")
