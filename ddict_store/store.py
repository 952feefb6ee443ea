"""DDictStore: typed put/get of arrays, tensors and Python objects over Dragon's DDict, with namespaces.

Keys are strings; a ``Namespace`` prefixes them (``campaign/topic/run``) so that concurrent runs never
see each other's keys. The store is shared with any Dragon process by its ``handle`` (or by pickling it).
Where each value's bytes go (inline, a buffer on the writer's node, chunks over the managers) is the
business of ``ddict_store.values``; the Dragon workarounds a store needs are in
``ddict_store.workarounds``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dragon.data.ddict.ddict import DDict
from dragon.native.machine import System

from ddict_store.buffers import Allocation, BufferPools
from ddict_store.codec import ALLOCATION_KIND, Encoded, encode
from ddict_store.errors import StoreClosedError, StoreError
from ddict_store.values import SEPARATOR, ValueRef, Values
from ddict_store.workarounds import (
    all_alive,
    call_with_deadline,
    cap_spinning_threads,
    create_ddict,
    ddict_processes,
    ddict_segment_prefix,
    keep_root_logging,
    lower_orchestrator_priority,
    register_segments,
    remove_cap,
)

logger = logging.getLogger(__name__)

_MISSING = object()
MB = 2**20
DESTROY_TIMEOUT_S = 30.0  # how long destroying a store may take before it is given up (a dead manager never answers)
LIVENESS_TIMEOUT_S = 5.0  # how long the runtime gets to say whether the DDict's processes live (it answers in ms)


@dataclass(frozen=True)
class StoreConfig:
    """Sizing of a store; travels inside the handle so every process sees the same settings."""

    name: str
    managers_per_node: int
    nodes: int
    ddict_bytes_per_node: int
    buffer_bytes_per_node: int
    inline_bytes: int
    chunk_bytes: int
    replicate_chunks: bool


class Namespace:
    """A view of the store whose keys all start with one prefix."""

    def __init__(self, store: DDictStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def namespace(self, *parts: str) -> Namespace:
        """A nested namespace: ``store.namespace("campaign").namespace("simulate")``."""
        for part in parts:
            if not part or SEPARATOR in part:
                raise ValueError(f"Namespace parts must be non-empty and free of {SEPARATOR!r}: {part!r}")
        return Namespace(self.store, SEPARATOR.join([p for p in (self.prefix, *parts) if p]))

    def full_key(self, key: str) -> str:
        """The store-wide key of ``key`` in this namespace (TypeError for an empty or non-string key)."""
        if not isinstance(key, str) or not key:
            raise TypeError(f"Keys must be non-empty strings, got {key!r}")
        return f"{self.prefix}{SEPARATOR}{key}" if self.prefix else key

    def put(self, key: str, value: Any, placement: str = "auto") -> ValueRef:
        """Store a value; ``placement``: "auto" (by size), "inline", "buffer" or "chunks".

        Returns a ``ValueRef`` that readers can use instead of the key to skip the DDict lookup.
        """
        full = self.full_key(key)
        return self.store.values.put(full, encode(value), placement)

    def put_allocation(self, key: str, allocation: Allocation, note: bytes = b"", new: bool = False) -> ValueRef:
        """Store the bytes a writer put into ``store.allocate(n)`` without copying them, with a ``note``
        kept beside them (``ref.entry.header[0]``); the store owns the allocation from then on, also when
        this raises. ``get`` returns the bytes as a uint8 array. ``new``: ``key`` is known to hold nothing
        (a fresh unique key), which saves a DDict round trip.
        """
        encoded = Encoded(ALLOCATION_KIND, (note,), (allocation.array,))
        return self.store.values.put(self.full_key(key), encoded, "buffer", written=allocation.ref, new=new)

    def get(self, key: str, default: Any = _MISSING, *, timeout: float | None = None, copy: bool = True,
            out: np.ndarray | None = None, map_location: str | None = None) -> Any:
        """Read a value. With ``timeout``, wait up to that long for a writer to create it.

        Args:
            default: Returned if the key is missing (instead of raising KeyError); not with ``timeout``.
            copy: False: a numpy array (or dict of arrays) held in a buffer on this node comes back as a
                read-only view of that buffer, without copying; it stays valid until the key is deleted or
                overwritten. Other values are copied as usual.
            out: A contiguous numpy array of the right size and dtype to read an array into (no allocation).
            map_location: Device for tensors (default: the writer's device if visible here, else CPU).

        Raises:
            KeyError: the key does not exist.
            TimeoutError: the key did not appear within ``timeout`` seconds.
        """
        full = self.full_key(key)
        try:
            entry = self.store.values.entry(full, timeout)
        except KeyError:
            if default is _MISSING:
                raise
            return default
        return self.store.values.value(full, entry, copy, out, map_location)

    def read(self, ref: ValueRef, *, copy: bool = True, out: np.ndarray | None = None, map_location: str | None = None) -> Any:
        """Read the value ``ref`` points to (options as for ``get``); no DDict lookup if its buffer is on this node.

        Raises:
            KeyError: the value was deleted or overwritten since ``ref`` was made.
        """
        return self.store.values.read(ref, copy, out, map_location)

    def wait(self, key: str, timeout: float) -> Any:
        """Block until a producer has written ``key`` (up to ``timeout`` seconds), then read it."""
        return self.get(key, timeout=timeout)

    def put_batch(self, items: Mapping[str, Any], placement: str = "auto") -> list[ValueRef]:
        """Store several values; returns their references."""
        return [self.put(key, value, placement) for key, value in items.items()]

    def get_batch(self, keys: Iterable[str], **options: Any) -> list[Any]:
        """Read several values (options as for ``get``)."""
        return [self.get(key, **options) for key in keys]

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value."""
        return self.store.values.exists(self.full_key(key))

    def __contains__(self, key: str) -> bool:
        return self.exists(key)

    def delete(self, key: str) -> None:
        """Remove a key and free its buffer and chunks. Raises KeyError if missing."""
        self.store.values.delete(self.full_key(key))

    def keys(self) -> list[str]:
        """Keys of this namespace (nested namespaces included), relative to it."""
        start = f"{self.prefix}{SEPARATOR}" if self.prefix else ""
        return sorted(k[len(start):] for k in self.store.values.keys() if k.startswith(start))

    def clear(self) -> None:
        """Delete every key of this namespace (nested namespaces included)."""
        for key in self.keys():
            self.delete(key)


class DDictStore(Namespace):
    """The root namespace of a store over one DDict; create it once, attach to it anywhere."""

    def __init__(
        self,
        name: str | None = None,
        *,
        managers_per_node: int = 1,
        nodes: int | None = None,
        ddict_bytes_per_node: int = 512 * MB,
        buffer_bytes_per_node: int = 2048 * MB,
        inline_bytes: int = 64 * 1024,
        chunk_bytes: int = 32 * MB,
        replicate_chunks: bool | None = None,
        timeout: float = 120.0,
    ) -> None:
        """Create a store (call inside a Dragon runtime).

        Args:
            name: Names the store's pools and checkpoints (default: a random name).
            managers_per_node: DDict managers on each node.
            nodes: Nodes with managers (default: every node of the runtime).
            ddict_bytes_per_node: DDict memory per node (inline values, descriptors, chunks).
            buffer_bytes_per_node: Managed memory per node for large values (created on first write there).
            inline_bytes: Values up to this size are stored inline in the DDict.
            chunk_bytes: Size of the chunks of values stored with placement "chunks".
            replicate_chunks: Also write chunks for buffered values, so readers on other nodes can fetch
                them (default: only when the runtime has more than one node).
            timeout: Timeout of DDict operations, in seconds.
        """
        n_nodes = nodes or System().nnodes
        config = StoreConfig(
            name=name or f"store-{uuid.uuid4().hex[:8]}",
            managers_per_node=managers_per_node,
            nodes=n_nodes,
            ddict_bytes_per_node=ddict_bytes_per_node,
            buffer_bytes_per_node=buffer_bytes_per_node,
            inline_bytes=inline_bytes,
            chunk_bytes=chunk_bytes,
            replicate_chunks=n_nodes > 1 if replicate_chunks is None else replicate_chunks,
        )
        register_segments(ddict_segment_prefix(config.name))
        ddict = create_ddict(managers_per_node, n_nodes, ddict_bytes_per_node * n_nodes, timeout, config.name)
        self._setup(config, ddict, owner=True)

    def _setup(self, config: StoreConfig, ddict: DDict, owner: bool) -> None:
        super().__init__(self, "")
        self.config = config
        self._ddict: DDict | None = ddict
        self._owner = owner
        self._buffers = BufferPools(config.name, config.buffer_bytes_per_node)
        self.values = Values(config, lambda: self._dict, self._buffers)  # the byte path
        self._service_puids = ddict_processes(ddict) if owner else []  # listed now: a dead one's children are not found later
        self._spin_cap: Path | None = None
        if owner:
            orchestrator = lower_orchestrator_priority(ddict)
            if orchestrator is not None:
                self._spin_cap = cap_spinning_threads(orchestrator, config.name)

    # -- sharing --------------------------------------------------------------------------------------------
    @property
    def handle(self) -> str:
        """A string any Dragon process can pass to ``attach``."""
        payload = {"config": self.config.__dict__, "ddict": self._dict.serialize()}
        return base64.b64encode(json.dumps(payload).encode()).decode()

    @classmethod
    def attach(cls, handle: str) -> DDictStore:
        """The store behind ``handle``, in this process (close it when done; the creator destroys it)."""
        payload = json.loads(base64.b64decode(handle))
        store = cls.__new__(cls)
        with keep_root_logging():
            ddict = DDict.attach(payload["ddict"])
        store._setup(StoreConfig(**payload["config"]), ddict, owner=False)
        return store

    def __getstate__(self) -> dict[str, str]:
        return {"handle": self.handle}

    def __setstate__(self, state: dict[str, str]) -> None:
        attached = DDictStore.attach(state["handle"])
        self._setup(attached.config, attached._ddict, owner=False)

    # -- life cycle -----------------------------------------------------------------------------------------
    @property
    def _dict(self) -> DDict:
        self._require_open()
        return self._ddict

    def _require_open(self) -> None:
        if self._ddict is None:
            raise StoreClosedError(f"The store {self.config.name!r} is closed or destroyed")

    def close(self) -> None:
        """Detach this process from the store (the data stays for others)."""
        self.values.close()
        if self._ddict is not None:
            self._ddict.detach()
            self._ddict = None

    def destroy(self, timeout: float = DESTROY_TIMEOUT_S) -> bool:
        """Free every buffer and the DDict itself (creator only); False if that did not finish within
        ``timeout`` seconds (a DDict manager that died never answers): the store is then given up, and the
        runtime's teardown removes its memory.
        """
        if not self._owner:
            raise StoreError(f"Only the process that created the store {self.config.name!r} can destroy it; others close()")
        ddict = self._dict
        alive: list[bool] = []
        answered = call_with_deadline(lambda: alive.append(all_alive(self.service_puids())), LIVENESS_TIMEOUT_S,
                                      f"check-{self.config.name}")
        if not (answered and alive[0]):  # a dead manager: every operation would wait for it until the deadline
            self._ddict = None
            if self._spin_cap is not None:
                remove_cap(self._spin_cap)
            logger.error(f"The store {self.config.name!r} lost a DDict process (or the runtime does not answer); not "
                         "destroying it: the runtime's teardown removes its memory")
            return False

        def free_everything() -> None:
            self.values.close()
            for key in self.values.keys():
                try:
                    self.values.free(self.values.entry(key))
                except Exception:
                    logger.debug(f"Could not free the buffer of {key!r}", exc_info=True)
            self._buffers.destroy_pools([node for node in System().nodes])
            ddict.destroy()

        try:
            done = call_with_deadline(free_everything, timeout, f"destroy-{self.config.name}")
        finally:
            self._ddict = None
            if self._spin_cap is not None:
                remove_cap(self._spin_cap)
        if not done:
            logger.error(f"The store {self.config.name!r} was not destroyed within {timeout:g} s (a DDict manager does not "
                         "answer); giving it up: the runtime's teardown removes its memory")
        return done

    def __enter__(self) -> DDictStore:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._ddict is not None:
            self.destroy() if self._owner else self.close()

    def map_buffers(self) -> bool:
        """Map this node's buffer pool into the calling process now rather than page by page on first use.

        Call it once in a long-lived worker before timed work (a warm-up task): afterwards its writes of
        large values and its in-place reads (``copy=False``) run at memory speed. It costs about 0.3 s per
        GB of ``buffer_bytes_per_node`` here, and the first call on a node also allocates that memory.
        Returns False (and logs why) where the kernel cannot do it (Linux before 5.14).
        """
        self._require_open()
        return self._buffers.map_local()

    def allocate(self, nbytes: int) -> Allocation:
        """Memory for a value of ``nbytes`` in this node's buffer pool, for writers that serialize straight
        into it (ProxyStore's serializer in ``ddict_store.frames``); store it with ``put_allocation``.
        """
        self._require_open()
        return self._buffers.allocate(nbytes, f"an allocation of {nbytes:,} bytes")

    def live_bytes(self) -> dict[str, int]:
        """Memory the store's values hold now: in the DDict (all managers) and in this node's buffer pool."""
        return {"ddict": sum(s.total_used_bytes for s in self._dict.stats), "buffers_this_node": self._buffers.used_bytes()}

    def service_puids(self) -> list[int]:
        """Dragon puids of the DDict's orchestrator and managers (in the creating process; [] elsewhere).
        If one of them exits the store has lost data: watch them (``DragonTaskServer.watch``).
        """
        return list(self._service_puids)

    def manager_hosts(self) -> list[str]:
        """The host of each DDict manager, by manager id."""
        return [s.hostname for s in sorted(self._dict.stats, key=lambda s: s.manager_id)]

    def capacity(self) -> dict[str, int]:
        """Bytes of DDict memory in total and in use, and buffer memory per node."""
        stats = self._dict.stats
        return {
            "ddict_total": sum(s.total_bytes for s in stats),
            "ddict_used": sum(s.total_used_bytes for s in stats),
            "buffer_per_node": self.config.buffer_bytes_per_node,
        }

    def export_value(self, key: str) -> tuple[str, tuple, np.ndarray]:
        """A key's stored form: kind, header and raw bytes (a private copy), for checkpoints."""
        entry = self.values.entry(key)
        data = np.empty(entry.nbytes, dtype=np.uint8)
        self.values.read_bytes(key, entry, data)
        return entry.kind, entry.header, data

    def import_value(self, key: str, kind: str, header: tuple, data: np.ndarray) -> None:
        """Store a value given in its stored form (the inverse of ``export_value``)."""
        self.values.put(key, Encoded(kind, header, (data,)), "auto")


_attached: dict[str, DDictStore] = {}
_attached_lock = threading.Lock()


def attached(handle: str) -> DDictStore:
    """The store behind ``handle``, attached once per process: for task functions, which run many times in
    one long-lived worker and should not pay an attach (a DDict round trip) per task.
    """
    with _attached_lock:
        if handle not in _attached:
            _attached[handle] = DDictStore.attach(handle)
        return _attached[handle]
