"""DDictConnector: ProxyStore's ``Connector`` protocol over a :class:`~ddict_store.DDictStore`.

    from proxystore.store import Store
    store = Store("ddict", DDictConnector(DDictStore()))
    proxy = store.proxy(big_array)        # pass `proxy` to any Dragon process; it resolves from the store

Objects arrive already serialized (bytes); they are stored as raw uint8 buffers, so large ones take the
store's managed-memory path and small ones sit inline in the DDict. ``config()`` carries the store's
handle, so a worker that receives a proxy rebuilds the connector with ``from_config`` and attaches.
``close()`` detaches from a store the connector attached to itself; it never deletes stored objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ddict_store.store import DDictStore
from ddict_store.values import ValueRef

BytesLike = bytes | bytearray | memoryview


class DDictKey(NamedTuple):
    """Key of an object stored through the connector.

    For an object in a managed-memory buffer the key also carries its :class:`ValueRef` (a few hundred
    bytes), so a reader on the writer's node resolves the proxy without a DDict round trip.
    """

    ddict_key: str
    ref: ValueRef | None = None


class DDictConnector:
    """ProxyStore connector backed by Dragon's DDict and managed memory."""

    def __init__(self, store: DDictStore | str, namespace: str = "proxystore") -> None:
        """
        Args:
            store: A store, or its ``handle`` (the connector then attaches and owns that attachment).
            namespace: Namespace of the store that holds the connector's objects.
        """
        self._attached = isinstance(store, str)
        self.store = DDictStore.attach(store) if isinstance(store, str) else store
        self.namespace_name = namespace
        self._objects = self.store.namespace(namespace)

    def __repr__(self) -> str:
        return f"DDictConnector(store={self.store.config.name!r}, namespace={self.namespace_name!r})"

    def close(self) -> None:
        """Detach from the store if this connector attached to it itself (from a handle); stored objects stay."""
        if self._attached:
            self.store.close()
            self._attached = False

    def config(self) -> dict[str, Any]:
        """What a worker needs to rebuild this connector (ProxyStore's ``Connector.config``)."""
        # ProxyStore rebuilds connectors as DDictConnector(**config): keys match __init__'s parameters
        return {"store": self.store.handle, "namespace": self.namespace_name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DDictConnector:
        """Rebuild the connector in another process from :meth:`config`."""
        return cls(**config)

    def put(self, obj: BytesLike) -> DDictKey:
        """Store one object; returns its key."""
        name = uuid.uuid4().hex
        ref = self._objects.put(name, np.frombuffer(obj, dtype=np.uint8))
        return DDictKey(name, ref if ref.entry.buffer is not None else None)

    def put_batch(self, objs: Sequence[BytesLike]) -> list[DDictKey]:
        """Store several objects; returns their keys."""
        return [self.put(obj) for obj in objs]

    def get(self, key: DDictKey) -> BytesLike | None:
        """The object under ``key``, or None if it is gone."""
        # a read-only view of a same-node buffer: ProxyStore deserializes it at once, so no private copy is needed
        try:
            array = self._objects.read(key.ref, copy=False) if key.ref is not None else self._objects.get(key.ddict_key, copy=False)
        except KeyError:
            return None
        return memoryview(array)

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
