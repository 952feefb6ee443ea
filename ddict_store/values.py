"""The byte path of a store: where each value's bytes go, and reading them back.

Where a value goes depends on its size (``Entry`` records which):

* small values (up to ``inline_bytes``) sit inline in the DDict entry;
* large values go to a managed-memory buffer on the writer's node (see ``ddict_store.buffers``): the
  DDict holds only the descriptor, and a reader on that node copies the bytes at memcpy speed;
* with ``placement="chunks"`` (or when the runtime spans several nodes, so that readers elsewhere can
  fetch it), the bytes are also split into chunks spread round-robin over the DDict's managers; a value
  larger than one manager's memory must use chunks.

``Values`` is the interface ``Namespace`` uses; it knows nothing of
namespaces or of the store's life cycle.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from dragon.data.ddict.ddict import DDict, DDictFullError

from ddict_store.buffers import BufferPools, BufferRef, StaleBufferError
from ddict_store.chunk_readers import ChunkReaders, read_chunk
from ddict_store.codec import ALLOCATION_KIND, Encoded, decode
from ddict_store.errors import StoreFullError

SEPARATOR = "/"
INTERNAL_PREFIX = "__ddict_store__"
CHUNK_FRAMING_BYTES = 64 * 1024
MAX_CHUNK_READ_THREADS = 4
IN_PLACE_KINDS = ("numpy", "arrays", ALLOCATION_KIND)  # what ``copy=False`` returns as views
MANAGER_FULL_FRACTION = 0.85  # DDict managers call a pool full at 90% (manager_pool_full_thresh); keep a margin
PLACEMENTS = ("auto", "inline", "buffer", "chunks")


@dataclass(frozen=True)
class Entry:
    """What the DDict holds for one key."""

    kind: str
    header: tuple
    nbytes: int
    token: bytes  # random per write: tells this value from a later one under the same key
    inline: bytes | None = None
    buffer: BufferRef | None = None
    chunks: tuple[tuple[int, str], ...] | None = None  # (manager, chunk key) pairs


@dataclass(frozen=True)
class ValueRef:
    """What ``put`` returns: a small picklable reference to the value just written.

    Pass it in a task's arguments or result instead of the key: ``store.read(ref)`` on the writer's node
    copies the bytes straight from the writer's buffer without a DDict round trip (which costs milliseconds,
    tens under load). It reads exactly the value it was made for, or raises ``KeyError`` once that value
    was deleted or overwritten.
    """

    key: str
    entry: Entry


class Sizing(Protocol):
    """The part of a store's configuration the byte path needs (``StoreConfig`` has it)."""

    @property
    def name(self) -> str:
        """The store's name."""

    @property
    def nodes(self) -> int:
        """Nodes with DDict managers."""

    @property
    def managers_per_node(self) -> int:
        """DDict managers per node."""

    @property
    def ddict_bytes_per_node(self) -> int:
        """DDict memory per node."""

    @property
    def inline_bytes(self) -> int:
        """Values up to this size go inline."""

    @property
    def chunk_bytes(self) -> int:
        """Size of a chunk."""

    @property
    def replicate_chunks(self) -> bool:
        """Whether buffered values are also chunked, for readers on other nodes."""


class Values:
    """Writes, reads and frees the values of one DDict (see the module's docstring)."""

    def __init__(self, sizing: Sizing, ddict: Callable[[], DDict], buffers: BufferPools) -> None:
        """``ddict`` gives the open DDict (it raises once the store is closed)."""
        self.sizing = sizing
        self._ddict = ddict
        self._buffers = buffers
        self._managers = sizing.managers_per_node * sizing.nodes
        self._lock = threading.Lock()
        self._chunk_readers: ChunkReaders | None = None

    # -- writing ---------------------------------------------------------------------------------------------
    def put(self, key: str, encoded: Encoded, placement: str, written: BufferRef | None = None, new: bool = False) -> ValueRef:
        """Store an encoded value under ``key``, freeing what the key held before.

        ``written``: the value's bytes are already in this allocation of the node's pool (``encoded`` views
        them), which the store now owns; the placement is then "buffer". ``new``: the caller knows the key
        holds nothing (a fresh unique key), which saves the DDict lookup of what it held.
        """
        if placement not in PLACEMENTS:
            raise ValueError(f"Unknown placement {placement!r}; use {', '.join(PLACEMENTS)}")
        if written is not None:
            placement = "buffer"
        elif placement == "auto":
            placement = "inline" if encoded.nbytes <= self.sizing.inline_bytes else "buffer"
        token = uuid.uuid4().bytes
        inline = encoded.data.tobytes() if placement == "inline" else None
        buffer = written or (self._buffers.write(encoded.parts, key) if placement == "buffer" else None)
        chunks = None
        try:
            if placement == "chunks" or (buffer is not None and self.sizing.replicate_chunks):
                chunks = self._write_chunks(key, encoded)
            entry = Entry(encoded.kind, encoded.header, encoded.nbytes, token, inline, buffer, chunks)
            previous = None if new else self._ddict().get(key)  # a round trip to the manager, whether the key exists or not
            self._ddict_put(self._ddict(), key, entry, encoded.nbytes)
        except BaseException:
            self.free(Entry(encoded.kind, encoded.header, encoded.nbytes, token, None, buffer, chunks))
            raise
        if previous is not None:
            self.free(previous)
        return ValueRef(key, entry)

    def _ddict_put(self, target: DDict, key: str, value: Any, nbytes: int) -> None:
        try:
            target[key] = value
        except DDictFullError:
            self._raise_full(key, nbytes)

    @property
    def _chunk_payload(self) -> int:
        """Bytes of data per chunk: a little under ``chunk_bytes``, so that a chunk and its pickle framing
        fit one power-of-two block of the manager's allocator instead of taking a block twice as large.
        """
        return max(self.sizing.chunk_bytes - CHUNK_FRAMING_BYTES, CHUNK_FRAMING_BYTES)

    def _write_chunks(self, key: str, encoded: Encoded) -> tuple[tuple[int, str], ...]:
        size = self._chunk_payload
        start_manager = hash(key) % self._managers
        plan = [
            ((start_manager + index) % self._managers, f"{INTERNAL_PREFIX}{SEPARATOR}chunk{SEPARATOR}{key}{SEPARATOR}{index}", offset)
            for index, offset in enumerate(range(0, max(encoded.nbytes, 1), size))
        ]
        self._check_room(key, encoded.nbytes, [manager for manager, _, _ in plan])
        chunks: list[tuple[int, str]] = []
        try:
            for manager, chunk_key, offset in plan:
                self._ddict_put(self._ddict().manager(manager), chunk_key, encoded.data[offset:offset + size].tobytes(), encoded.nbytes)
                chunks.append((manager, chunk_key))
        except BaseException:
            self.free(Entry(encoded.kind, encoded.header, encoded.nbytes, b"", chunks=tuple(chunks)))
            raise
        return tuple(chunks)

    def _check_room(self, key: str, nbytes: int, managers: list[int]) -> None:
        """Refuse a write the managers cannot hold: a full DDict manager blocks until its timeout instead of failing."""
        stats = self._ddict().dstats
        needed: dict[int, int] = {}
        for manager in managers:
            needed[manager] = needed.get(manager, 0) + self.sizing.chunk_bytes
        for manager, bytes_needed in needed.items():
            usable = int(stats[manager].total_bytes * MANAGER_FULL_FRACTION) - stats[manager].total_used_bytes
            if bytes_needed > usable:
                self._raise_full(key, nbytes)

    def _raise_full(self, key: str, nbytes: int) -> None:
        capacity = self.sizing.ddict_bytes_per_node * self.sizing.nodes
        raise StoreFullError(
            f"No room for {key!r} ({nbytes:,} bytes) in the store {self.sizing.name!r}: its DDict holds "
            f"{capacity:,} bytes over {self._managers} manager(s) of {capacity // self._managers:,} bytes each"
        )

    # -- reading ---------------------------------------------------------------------------------------------
    def entry(self, key: str, timeout: float | None = None) -> Entry:
        """The entry of ``key``; with ``timeout``, wait up to that long for a writer to create it.

        Raises:
            KeyError: the key does not exist (without ``timeout``).
            TimeoutError: it did not appear within ``timeout`` seconds.
        """
        if timeout is None:
            return self._entry(key)
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                return self._entry(key)
            except KeyError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"No value for {key!r} appeared within {timeout} s") from None
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.05)

    def _entry(self, key: str) -> Entry:
        try:
            entry = self._ddict()[key]
        except KeyError:
            raise KeyError(key) from None
        return entry

    def value(self, key: str, entry: Entry, copy: bool = True, out: np.ndarray | None = None, map_location: str | None = None) -> Any:
        """The value of an entry: a view of a same-node buffer (``copy=False``, arrays), read into ``out``, or a copy."""
        if not copy and out is None and entry.kind in IN_PLACE_KINDS and entry.buffer is not None and BufferPools.is_local(entry.buffer):
            try:
                return decode(entry.kind, entry.header, BufferPools.view(entry.buffer))
            except StaleBufferError:
                raise KeyError(f"{key!r} was deleted or overwritten while being read") from None
        if out is not None:
            if entry.kind != "numpy":
                raise TypeError(f"{key!r} holds a {entry.kind} value; out= works for numpy arrays only")
            if not out.flags.c_contiguous or out.nbytes != entry.nbytes or out.dtype != np.dtype(entry.header[0]):
                raise ValueError(f"out= must be a contiguous {np.dtype(entry.header[0])} array of {entry.nbytes} bytes for {key!r}")
            target = out.reshape(-1).view(np.uint8)
        else:
            target = np.empty(entry.nbytes, dtype=np.uint8)
        self.read_bytes(key, entry, target)
        value = decode(entry.kind, entry.header, target, map_location)
        return out.reshape(entry.header[1]) if out is not None else value

    def read(self, ref: ValueRef, copy: bool = True, out: np.ndarray | None = None, map_location: str | None = None) -> Any:
        """The value ``ref`` points to; no DDict lookup if its buffer is on this node."""
        entry = ref.entry
        if entry.buffer is None or not BufferPools.is_local(entry.buffer):
            entry = self._entry(ref.key)
            if entry.token != ref.entry.token:
                raise KeyError(f"{ref.key!r} was overwritten since this reference was made")
        return self.value(ref.key, entry, copy, out, map_location)

    def read_bytes(self, key: str, entry: Entry, target: np.ndarray) -> None:
        """Copy an entry's stored bytes into ``target`` (a uint8 array of ``entry.nbytes``)."""
        if entry.inline is not None:
            target[:] = np.frombuffer(entry.inline, dtype=np.uint8)
        elif entry.buffer is not None and BufferPools.is_local(entry.buffer):
            try:
                BufferPools.read_into(entry.buffer, target)
            except StaleBufferError:
                raise KeyError(f"{key!r} was deleted or overwritten while being read") from None
        elif entry.chunks is not None:
            self._read_chunks(entry, target)
        else:
            raise KeyError(f"{key!r} is held in memory on another node and was stored without chunks (replicate_chunks=False)")

    def _read_chunks(self, entry: Entry, target: np.ndarray) -> None:
        """Chunks on several managers are read in parallel, by threads with DDict clients of their own."""
        chunks = entry.chunks or ()
        threads = min(MAX_CHUNK_READ_THREADS, os.cpu_count() or 1, self._managers)
        if min(threads, len(chunks)) <= 1:
            for index, chunk in enumerate(chunks):
                read_chunk(self._ddict(), chunk, index, self._chunk_payload, target)
            return
        with self._lock:
            if self._chunk_readers is None:
                self._chunk_readers = ChunkReaders(self._ddict().serialize(), threads)
        self._chunk_readers.read(chunks, self._chunk_payload, target)

    # -- keys ------------------------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value."""
        return key in self._ddict()

    def delete(self, key: str) -> None:
        """Remove a key and free its buffer and chunks; KeyError if missing."""
        try:
            entry = self._ddict().pop(key)  # read and remove in one round trip
        except KeyError:
            raise KeyError(key) from None
        self.free(entry)

    def free(self, entry: Entry) -> None:
        """Release an entry's buffer and chunks (not its DDict key).

        Dragon frees managed memory only on its own node: a buffer on another node stays allocated until the
        store is destroyed (which removes every node's pool), and ``live_bytes`` there still counts it.
        """
        if entry.buffer is not None and BufferPools.is_local(entry.buffer):
            try:
                BufferPools.free(entry.buffer)
            except StaleBufferError:
                pass  # a concurrent writer of the same key freed it first
        for manager, chunk_key in entry.chunks or ():
            try:
                del self._ddict().manager(manager)[chunk_key]
            except KeyError:
                pass

    def keys(self) -> Iterator[str]:
        """Every user key (the store's internal chunk keys left out)."""
        return (k for k in self._ddict().keys() if isinstance(k, str) and not k.startswith(INTERNAL_PREFIX))

    def close(self) -> None:
        """Stop the chunk readers' threads (the DDict itself belongs to the store)."""
        with self._lock:
            if self._chunk_readers is not None:
                self._chunk_readers.close()
                self._chunk_readers = None
