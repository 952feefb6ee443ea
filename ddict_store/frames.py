"""ProxyStore's serializer and deserializer for the store: arrays and tensors go into managed memory with
one copy, and come back with one copy (or none).

ProxyStore's default serializer writes an array with ``np.save`` into a ``BytesIO`` and takes its bytes
(two copies into fresh memory), the connector copies those bytes into the store, and its deserializer
copies them out again and once more into the array (measured here: 0.3 GB/s for 64 MB, against 4 GB/s for
a store read). ``FrameSerializer`` pickles with protocol 5, so the data of numpy arrays and CPU
tensors stays out of band as views of the original memory, and copies those buffers once, straight into
an allocation of the writer's buffer pool sized to them alone (Dragon rounds allocations up to a power of
two, so a header in the same allocation would double the memory of a 2**k-byte array). What ProxyStore
then holds is a small *frame*: the pickle, where each buffer lies, and the allocation's descriptor. The
``DDictConnector`` stores the frame and takes ownership of the allocation
without copying it. ``FrameDeserializer`` attaches the allocation and rebuilds the object with one
copy into private memory, or with none (``views=True``: read-only arrays over the store's memory, valid
until the object is evicted, so not for proxies made with ``evict=True``).

Two forms, told apart by their first four bytes:

* ``DCF1``, self-contained: prefix, (offset, length) per buffer, the pickle, the buffers (each at a
  multiple of 64 bytes). Small objects, objects serialized without a store, and what the connector hands
  to a reader on another node (assembled from the chunks) have this form; any connector can hold it.
* ``DCF2``, external: prefix, (offset, length) per buffer within the allocation, the pickle, then the
  allocation's node, size and descriptor.

The deserializer also reads objects written by ProxyStore's default serializer (it hands them on).
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
import warnings
import weakref
from typing import Any, NamedTuple

import cloudpickle
import numpy as np
from proxystore.serialize import deserialize as proxystore_deserialize

from ddict_store.buffers import Allocation, BufferPools, BufferRef, copy_bytes
from ddict_store.store import DDictStore, attached

INLINE, EXTERNAL = b"DCF1", b"DCF2"
PREFIX = struct.Struct("<4sIQ")  # form, number of buffers, pickle length
PAIR = struct.Struct("<QQ")  # offset and length of one buffer
ALLOCATION = struct.Struct("<QQI")  # node, bytes, descriptor length (DCF2, after the pickle)
ALIGNMENT = 64

# frames whose buffers were written into managed memory and that no connector has stored yet, by id
_unstored: dict[int, tuple[weakref.ref, Allocation]] = {}


def _rebuild_tensor(data: Any, dtype: str, shape: tuple[int, ...], device: str, requires_grad: bool) -> Any:
    import torch

    with warnings.catch_warnings():  # a view of the store is read-only by contract (FrameDeserializer(views=True))
        warnings.filterwarnings("ignore", "The given buffer is not writable")
        flat = torch.frombuffer(data, dtype=torch.uint8) if memoryview(data).nbytes else torch.empty(0, dtype=torch.uint8)
    tensor = flat.view(getattr(torch, dtype)).reshape(shape)
    if device.startswith("cuda") and torch.cuda.is_available():
        tensor = tensor.to(device)
    return tensor.requires_grad_(requires_grad) if requires_grad else tensor


class _FramePickler(pickle.Pickler):
    """Protocol 5 with out-of-band buffers, and plain tensors reduced to their raw bytes (torch's own
    reduction copies a tensor's storage into the pickle).
    """

    def reducer_override(self, obj: Any) -> Any:
        torch = sys.modules.get("torch")  # never import torch just to find out
        if torch is None or type(obj) is not torch.Tensor or obj.is_sparse or obj.is_quantized:
            return NotImplemented
        flat = obj.detach().cpu().contiguous().reshape(-1)
        data: Any = flat.view(torch.uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
        return _rebuild_tensor, (pickle.PickleBuffer(data), str(obj.dtype).removeprefix("torch."), tuple(obj.shape),
                                 str(obj.device), obj.requires_grad)


def _pickle(obj: Any) -> tuple[bytes, list[np.ndarray]]:
    """The pickle and its out-of-band buffers; what pickle refuses (lambdas, local classes) goes through
    cloudpickle, as ProxyStore's own serializer does.
    """
    buffers: list[pickle.PickleBuffer] = []
    stream = io.BytesIO()
    try:
        _FramePickler(stream, protocol=5, buffer_callback=buffers.append).dump(obj)
        header = stream.getvalue()
    except (pickle.PicklingError, AttributeError, TypeError):
        buffers.clear()
        header = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return header, [np.frombuffer(buffer.raw(), dtype=np.uint8) for buffer in buffers]


def _offsets(start: int, buffers: list[np.ndarray]) -> tuple[list[int], int]:
    """Where each buffer goes from ``start`` on (aligned), and where the last one ends."""
    offsets, offset = [], start
    for buffer in buffers:
        offset += -offset % ALIGNMENT
        offsets.append(offset)
        offset += buffer.nbytes
    return offsets, offset


def _head(form: bytes, header: bytes, buffers: list[np.ndarray], offsets: list[int]) -> bytes:
    pairs = b"".join(PAIR.pack(offset, buffer.nbytes) for offset, buffer in zip(offsets, buffers, strict=True))
    return PREFIX.pack(form, len(buffers), len(header)) + pairs + header


def _copy_into(target: np.ndarray, buffers: list[np.ndarray], offsets: list[int]) -> None:
    for offset, buffer in zip(offsets, buffers, strict=True):
        copy_bytes(target[offset:offset + buffer.nbytes], buffer)


def inline_frame(header: bytes, buffers: list[np.ndarray]) -> bytearray:
    """A self-contained (DCF1) frame of a pickle and its buffers."""
    start = PREFIX.size + PAIR.size * len(buffers) + len(header)
    offsets, size = _offsets(start, buffers)
    frame = bytearray(size)
    frame[:start] = _head(INLINE, header, buffers, offsets)
    _copy_into(np.frombuffer(frame, dtype=np.uint8), buffers, offsets)
    return frame


def _free_unstored(key: int) -> None:
    _, allocation = _unstored.pop(key, (None, None))
    if allocation is not None:
        try:
            allocation.free()
        except Exception:  # the store was destroyed first: its pool went with it
            pass


def take_allocation(data: Any) -> Allocation | None:
    """The allocation behind an external frame that FrameSerializer returned, for the connector to store
    (from then on the connector owns it); None for any other bytes.
    """
    pending = _unstored.get(id(data))
    if pending is None or pending[0]() is not data:  # not ours, or an id reused after the frame died
        return None
    del _unstored[id(data)]
    return pending[1]


class Frame(NamedTuple):
    """A parsed frame: the pickle, where each buffer lies, and (DCF2) the allocation holding the buffers."""

    pickle: bytes
    buffers: list[tuple[int, int]]  # (offset, length): in the frame (DCF1) or in the allocation (DCF2)
    allocation: BufferRef | None


def parse(frame: memoryview) -> Frame:
    """Read a frame's head."""
    form, count, length = PREFIX.unpack_from(frame, 0)
    pairs = [PAIR.unpack_from(frame, PREFIX.size + PAIR.size * index) for index in range(count)]
    start = PREFIX.size + PAIR.size * count
    header = bytes(frame[start:start + length])
    if form != EXTERNAL:
        return Frame(header, pairs, None)
    node, nbytes, size = ALLOCATION.unpack_from(frame, start + length)
    descriptor_start = start + length + ALLOCATION.size
    return Frame(header, pairs, BufferRef(node, bytes(frame[descriptor_start:descriptor_start + size]), nbytes))


def is_frame(data: Any) -> bool:
    """Whether ``data`` starts like a frame."""
    return bytes(memoryview(data)[:4]) in (INLINE, EXTERNAL)


class FrameSerializer:
    """ProxyStore serializer writing frames (see the module's docstring); buffers go to ``store``'s pool.

    Objects whose buffers total up to the store's ``inline_bytes`` (and all objects when ``store`` is
    None) become self-contained frames. It pickles as the store's handle: a worker that rebuilds the
    ProxyStore store from its configuration uses its process's attachment (``attached``).
    """

    def __init__(self, store: DDictStore | str | None = None) -> None:
        self._handle = store.handle if isinstance(store, DDictStore) else store
        self._store = store if isinstance(store, DDictStore) else None

    def __getstate__(self) -> dict[str, Any]:
        return {"handle": self._handle}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._handle, self._store = state["handle"], None

    def __call__(self, obj: Any) -> bytearray | memoryview:
        """Serialize ``obj`` into a frame: one copy of its array and tensor data."""
        header, buffers = _pickle(obj)
        if self._store is None and self._handle is not None:
            self._store = attached(self._handle)
        offsets, payload = _offsets(0, buffers)
        if self._store is None or payload <= self._store.config.inline_bytes:
            return inline_frame(header, buffers)
        allocation = self._store.allocate(payload)
        try:
            _copy_into(allocation.array, buffers, offsets)
        except BaseException:
            allocation.free()
            raise
        ref = allocation.ref
        frame = memoryview(_head(EXTERNAL, header, buffers, offsets)
                           + ALLOCATION.pack(ref.host_uid, ref.nbytes, len(ref.descriptor)) + ref.descriptor)
        _unstored[id(frame)] = (weakref.ref(frame), allocation)
        finalizer = weakref.finalize(frame, _free_unstored, id(frame))  # never stored: give the memory back
        finalizer.atexit = False
        return frame


class FrameDeserializer:
    """ProxyStore deserializer for frames (and for ProxyStore's own format, which it hands on).

    ``views=False`` (the default): every array and tensor is a private, writable copy. ``views=True``:
    read-only views of the store's memory on this node, so reading costs no copy; they stay valid until
    the object is evicted.
    """

    def __init__(self, views: bool = False) -> None:
        self.views = views

    def __call__(self, data: Any) -> Any:
        """Rebuild the object in ``data`` (a frame, or bytes from ProxyStore's serializer)."""
        if not is_frame(data):
            return proxystore_deserialize(data)
        frame = memoryview(data).cast("B")
        header, pairs, ref = parse(frame)
        if ref is None:
            payload = np.frombuffer(frame, dtype=np.uint8)
            if self.views:
                payload.flags.writeable = False  # views are read-only, whatever holds the frame
            else:
                payload = _private(payload)
        elif self.views:
            payload = BufferPools.view(ref)
        else:
            payload = np.empty(ref.nbytes, dtype=np.uint8)
            BufferPools.read_into(ref, payload)  # StaleBufferError if the object was evicted meanwhile
        return pickle.loads(header, buffers=[payload[offset:offset + length] for offset, length in pairs])


def _private(data: np.ndarray) -> np.ndarray:
    private = np.empty(data.nbytes, dtype=np.uint8)
    copy_bytes(private, data)
    return private

