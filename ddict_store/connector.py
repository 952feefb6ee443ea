"""DDictConnector: ProxyStore's ``Connector`` protocol over a ``DDictStore``.

    from ddict_store.connector import ddict_proxy_store
    store = ddict_proxy_store("ddict", DDictStore(), register=True)
    proxy = store.proxy(big_array)        # pass `proxy` to any Dragon process; it resolves from the store

Objects arrive already serialized; they are stored as raw uint8 buffers, so large ones take the store's
managed-memory path and small ones sit inline in the DDict. With ``FrameSerializer``
(what ``ddict_proxy_store`` sets up) a large object arrives already written into managed memory and is
stored without another copy. ``config()`` carries the store's handle, so a worker that receives a proxy
rebuilds the connector with ``from_config`` and uses its process's attachment of the store.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from proxystore.store import Store

from ddict_store.buffers import BufferPools
from ddict_store.codec import ALLOCATION_KIND
from ddict_store.frames import FrameDeserializer, FrameSerializer, inline_frame, parse, take_allocation
from ddict_store.store import DDictStore, attached
from ddict_store.values import ValueRef
from ddict_store.workarounds import call_with_deadline

BytesLike = bytes | bytearray | memoryview
CLEAR_TIMEOUT_S = 30.0
logger = logging.getLogger(__name__)


class DDictKey(NamedTuple):
    """Key of an object stored through the connector.

    For an object in a managed-memory buffer the key also carries its ``ValueRef`` (a few hundred
    bytes), so a reader on the writer's node resolves the proxy without a DDict round trip.
    """

    ddict_key: str
    ref: ValueRef | None = None


class DDictConnector:
    """ProxyStore connector backed by Dragon's DDict and managed memory."""

    def __init__(self, store: DDictStore | str, namespace: str = "proxystore", clear: bool = False) -> None:
        """
        Args:
            store: A store, or its ``handle`` (then this process's attachment, ``attached``).
            namespace: Namespace of the store that holds the connector's objects.
            clear: Delete every object of the namespace when the connector is closed (the campaign's
                proxies are dropped with it; as ProxyStore's ``FileConnector(clear=True)``).
        """
        self.store = attached(store) if isinstance(store, str) else store
        self.namespace_name = namespace
        self.clear = clear
        self._objects = self.store.namespace(namespace)

    def __repr__(self) -> str:
        return f"DDictConnector(store={self.store.config.name!r}, namespace={self.namespace_name!r})"

    def close(self) -> None:
        """With ``clear``, delete the namespace's objects (giving up after ``CLEAR_TIMEOUT_S``: a DDict manager
        that died never answers, and a campaign's shutdown must not wait for it); the store itself stays open.
        """
        if self.clear and not call_with_deadline(self._objects.clear, CLEAR_TIMEOUT_S, f"clear-{self.namespace_name}"):
            logger.error(f"Clearing the namespace {self.namespace_name!r} did not finish within {CLEAR_TIMEOUT_S:g} s; "
                         "its objects go when the store is destroyed")

    def config(self) -> dict[str, Any]:
        """What a worker needs to rebuild this connector (ProxyStore's ``Connector.config``)."""
        # ProxyStore rebuilds connectors as DDictConnector(**config): keys match __init__'s parameters.
        # clear stays with the creator: a worker closing its copy must not drop the campaign's objects
        return {"store": self.store.handle, "namespace": self.namespace_name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DDictConnector:
        """Rebuild the connector in another process from ``config``."""
        return cls(**config)

    def put(self, obj: BytesLike) -> DDictKey:
        """Store one object; returns its key."""
        name = uuid.uuid4().hex
        allocation = take_allocation(obj)
        if allocation is not None:  # FrameSerializer wrote its buffers into managed memory: keep them there
            ref = self._objects.put_allocation(name, allocation, note=bytes(obj), new=True)  # a fresh uuid
        else:
            ref = self._objects.put(name, np.frombuffer(obj, dtype=np.uint8))
        return DDictKey(name, ref if ref.entry.buffer is not None else None)

    def put_batch(self, objs: Sequence[BytesLike]) -> list[DDictKey]:
        """Store several objects; returns their keys."""
        return [self.put(obj) for obj in objs]

    def get(self, key: DDictKey) -> BytesLike | None:
        """The object under ``key`` (a read-only view of its buffer when that is on this node), or None."""
        # the deserializer copies what it keeps (FrameDeserializer(views=True) keeps the view itself)
        try:
            if key.ref is not None and key.ref.entry.kind == ALLOCATION_KIND:
                return self._frame(key.ref)
            array = self._objects.read(key.ref, copy=False) if key.ref is not None else self._objects.get(key.ddict_key, copy=False)
        except KeyError:
            return None
        return memoryview(array)

    def _frame(self, ref: ValueRef) -> BytesLike:
        """A FrameSerializer frame: as stored where its buffers are on this node, else self-contained."""
        frame = ref.entry.header[0]
        buffer = ref.entry.buffer
        if buffer is not None and BufferPools.is_local(buffer):
            BufferPools.view(buffer)  # KeyError (StaleBufferError) once the object was evicted
            return frame
        payload = self._objects.read(ref)  # the buffers, from the chunks spread over the DDict's managers
        parsed = parse(memoryview(frame))
        return inline_frame(parsed.pickle, [payload[offset:offset + length] for offset, length in parsed.buffers])

    def get_batch(self, keys: Sequence[DDictKey]) -> list[BytesLike | None]:
        """The objects under ``keys`` (None for those that are gone)."""
        return [self.get(key) for key in keys]

    def exists(self, key: DDictKey) -> bool:
        """Whether an object is stored under ``key``."""
        return self._objects.exists(key.ddict_key)

    def evict(self, key: DDictKey) -> None:
        """Remove the object (no error if it is already gone, as ProxyStore expects)."""
        try:
            self._objects.delete(key.ddict_key)
        except KeyError:
            pass


def ddict_proxy_store(name: str, store: DDictStore, *, namespace: str | None = None, views: bool = False,
                      clear: bool = True, **options: Any) -> Store:
    """A ProxyStore ``Store`` over ``store`` with the frame serializer (arrays and tensors cost one copy
    each way, see ``ddict_store.frames``).

    Args:
        name: The ProxyStore store's name (workers find it by this name).
        store: The DDictStore that holds the objects.
        namespace: Namespace of ``store`` for the objects (default: ``proxystore-<name>``).
        views: Resolve arrays and tensors as read-only views of the store's memory (no copy); they stay
            valid until the object is evicted, so do not combine with ``evict=True`` proxies.
        clear: Delete the namespace's objects when the ProxyStore store is closed.
        options: More ``Store`` arguments (``register``, ``metrics``, ``cache_size``, ...).
    """
    connector = DDictConnector(store, namespace or "proxystore-" + name.replace("/", "-"), clear=clear)
    return Store(name, connector, serializer=FrameSerializer(store), deserializer=FrameDeserializer(views), **options)
