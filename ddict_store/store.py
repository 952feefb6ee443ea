"""DDictStore: typed put/get of arrays, tensors and Python objects over Dragon's DDict, with namespaces.

Where a value goes depends on its size (``Entry`` records which):

* small values (up to ``inline_bytes``) sit inline in the DDict entry;
* large values go to a managed-memory buffer on the writer's node (see :mod:`ddict_store.buffers`): the
  DDict holds only the descriptor, and a reader on that node copies the bytes at memcpy speed;
* with ``placement="chunks"`` (or when the runtime spans several nodes, so that readers elsewhere can
  fetch it), the bytes are also split into chunks spread round-robin over the DDict's managers; a value
  larger than one manager's memory must use chunks.

Keys are strings; a :class:`Namespace` prefixes them (``campaign/topic/run``) so that concurrent runs never
see each other's keys. The store is shared with any Dragon process by its ``handle`` (or by pickling it).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from dragon.data.ddict.ddict import DDict, DDictFullError
from dragon.native.machine import System
from dragon.native.process import Process

from ddict_store.buffers import BufferPools, BufferRef, StaleBufferError
from ddict_store.chunk_readers import ChunkReaders, read_chunk
from ddict_store.codec import Encoded, decode, encode
from ddict_store.errors import StoreClosedError, StoreError, StoreFullError
from ddict_store.workarounds import (
    all_alive,
    call_with_deadline,
    ddict_processes,
    ddict_segment_prefix,
    keep_root_logging,
    lower_orchestrator_priority,
    register_segments,
)

logger = logging.getLogger(__name__)

_MISSING = object()
MB = 2**20
DESTROY_TIMEOUT_S = 30.0  # how long destroying a store may take before it is given up (a dead manager never answers)
LIVENESS_TIMEOUT_S = 5.0  # how long the runtime gets to say whether the DDict's processes live (it answers in ms)
SEPARATOR = "/"
INTERNAL_PREFIX = "__ddict_store__"
CHUNK_FRAMING_BYTES = 64 * 1024
MAX_CHUNK_READ_THREADS = 4
IN_PLACE_KINDS = ("numpy", "arrays")  # what ``copy=False`` returns as views
MANAGER_FULL_FRACTION = 0.85  # DDict managers call a pool full at 90% (manager_pool_full_thresh); keep a margin


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
        if not isinstance(key, str) or not key:
            raise TypeError(f"Keys must be non-empty strings, got {key!r}")
        return f"{self.prefix}{SEPARATOR}{key}" if self.prefix else key

    def put(self, key: str, value: Any, placement: str = "auto") -> ValueRef:
        """Store a value; ``placement``: "auto" (by size), "inline", "buffer" or "chunks".

        Returns a :class:`ValueRef` that readers can use instead of the key to skip the DDict lookup.
        """
        return self.store._put(self.full_key(key), value, placement)

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
            entry = self.store._entry(full) if timeout is None else self.store._wait_entry(full, timeout)
        except KeyError:
            if default is _MISSING:
                raise
            return default
        return self.store._value(full, entry, copy, out, map_location)

    def read(self, ref: ValueRef, *, copy: bool = True, out: np.ndarray | None = None, map_location: str | None = None) -> Any:
        """Read the value ``ref`` points to (options as for ``get``); no DDict lookup if its buffer is on this node.

        Raises:
            KeyError: the value was deleted or overwritten since ``ref`` was made.
        """
        return self.store._read_ref(ref, copy, out, map_location)

    def wait(self, key: str, timeout: float) -> Any:
        """Block until a producer has written ``key`` (up to ``timeout`` seconds), then read it."""
        return self.get(key, timeout=timeout)

    def put_batch(self, items: Mapping[str, Any], placement: str = "auto") -> list[ValueRef]:
        return [self.put(key, value, placement) for key, value in items.items()]

    def get_batch(self, keys: Iterable[str], **options: Any) -> list[Any]:
        return [self.get(key, **options) for key in keys]

    def exists(self, key: str) -> bool:
        return self.store._exists(self.full_key(key))

    def __contains__(self, key: str) -> bool:
        return self.exists(key)

    def delete(self, key: str) -> None:
        """Remove a key and free its buffer and chunks. Raises KeyError if missing."""
        self.store._delete(self.full_key(key))

    def keys(self) -> list[str]:
        """Keys of this namespace (nested namespaces included), relative to it."""
        start = f"{self.prefix}{SEPARATOR}" if self.prefix else ""
        return sorted(k[len(start):] for k in self.store._all_keys() if k.startswith(start))

    def clear(self) -> None:
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
        self._n_managers = config.managers_per_node * config.nodes
        self._lock = threading.Lock()
        self._chunk_readers: ChunkReaders | None = None
        self._service_puids = ddict_processes(ddict) if owner else []  # listed now: a dead one's children are not found later
        if owner:
            lower_orchestrator_priority(ddict)

    # -- sharing --------------------------------------------------------------------------------------------
    @property
    def handle(self) -> str:
        """A string any Dragon process can pass to :meth:`attach`."""
        payload = {"config": self.config.__dict__, "ddict": self._dict.serialize()}
        return base64.b64encode(json.dumps(payload).encode()).decode()

    @classmethod
    def attach(cls, handle: str) -> DDictStore:
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
        self._close_chunk_readers()
        if self._ddict is not None:
            self._ddict.detach()
            self._ddict = None

    def _close_chunk_readers(self) -> None:
        if self._chunk_readers is not None:
            self._chunk_readers.close()
            self._chunk_readers = None

    def destroy(self, timeout: float = DESTROY_TIMEOUT_S) -> bool:
        """Free every buffer and the DDict itself (creator only); False if that did not finish within
        ``timeout`` seconds (a DDict manager that died never answers): the store is then given up, and the
        runtime's teardown removes its memory."""
        if not self._owner:
            raise StoreError(f"Only the process that created the store {self.config.name!r} can destroy it; others close()")
        ddict = self._dict
        alive: list[bool] = []
        answered = call_with_deadline(lambda: alive.append(all_alive(self.service_puids())), LIVENESS_TIMEOUT_S,
                                      f"check-{self.config.name}")
        if not (answered and alive[0]):  # a dead manager: every operation would wait for it until the deadline
            self._ddict = None
            logger.error(f"The store {self.config.name!r} lost a DDict process (or the runtime does not answer); not "
                         "destroying it: the runtime's teardown removes its memory")
            return False

        def free_everything() -> None:
            self._close_chunk_readers()
            for key in self._all_keys():
                try:
                    self._free(self._entry(key))
                except Exception:
                    logger.debug(f"Could not free the buffer of {key!r}", exc_info=True)
            self._buffers.destroy_pools([node for node in System().nodes])
            ddict.destroy()

        try:
            done = call_with_deadline(free_everything, timeout, f"destroy-{self.config.name}")
        finally:
            self._ddict = None
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

    def service_puids(self) -> list[int]:
        """Dragon puids of the DDict's orchestrator and managers (in the creating process; [] elsewhere).
        If one of them exits the store has lost data: watch them (``DragonTaskServer.watch``)."""
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

    # -- the data path --------------------------------------------------------------------------------------
    def _read_ref(self, ref: ValueRef, copy: bool, out: np.ndarray | None, map_location: str | None) -> Any:
        entry = ref.entry
        if entry.buffer is None or not BufferPools.is_local(entry.buffer):
            entry = self._entry(ref.key)
            if entry.token != ref.entry.token:
                raise KeyError(f"{ref.key!r} was overwritten since this reference was made")
        return self._value(ref.key, entry, copy, out, map_location)

    def export_value(self, key: str) -> tuple[str, tuple, np.ndarray]:
        """A key's stored form: kind, header and raw bytes (a private copy), for checkpoints."""
        entry = self._entry(key)
        data = np.empty(entry.nbytes, dtype=np.uint8)
        self._read_bytes(key, entry, data)
        return entry.kind, entry.header, data

    def import_value(self, key: str, kind: str, header: tuple, data: np.ndarray) -> None:
        """Store a value given in its stored form (the inverse of ``export_value``)."""
        self._store(key, Encoded(kind, header, (data,)), "auto")

    def _put(self, key: str, value: Any, placement: str) -> ValueRef:
        if placement not in ("auto", "inline", "buffer", "chunks"):
            raise ValueError(f"Unknown placement {placement!r}; use auto, inline, buffer or chunks")
        return self._store(key, encode(value), placement)

    def _store(self, key: str, encoded: Encoded, placement: str) -> ValueRef:
        if placement == "auto":
            placement = "inline" if encoded.nbytes <= self.config.inline_bytes else "buffer"
        token = uuid.uuid4().bytes
        inline = encoded.data.tobytes() if placement == "inline" else None
        buffer = self._buffers.write(encoded.parts, key) if placement == "buffer" else None
        chunks = None
        try:
            if placement == "chunks" or (buffer is not None and self.config.replicate_chunks):
                chunks = self._write_chunks(key, encoded)
            entry = Entry(encoded.kind, encoded.header, encoded.nbytes, token, inline, buffer, chunks)
            previous = self._dict.get(key)  # one round trip to the manager, whether the key exists or not
            self._ddict_put(self._dict, key, entry, encoded.nbytes)
        except BaseException:
            self._free(Entry(encoded.kind, encoded.header, encoded.nbytes, token, None, buffer, chunks))
            raise
        if previous is not None:
            self._free(previous)
        return ValueRef(key, entry)

    def _ddict_put(self, target: DDict, key: str, value: Any, nbytes: int) -> None:
        try:
            target[key] = value
        except DDictFullError:
            self._raise_full(key, nbytes)

    @property
    def _chunk_payload(self) -> int:
        """Bytes of data per chunk: a little under ``chunk_bytes``, so that a chunk and its pickle framing
        fit one power-of-two block of the manager's allocator instead of taking a block twice as large."""
        return max(self.config.chunk_bytes - CHUNK_FRAMING_BYTES, CHUNK_FRAMING_BYTES)

    def _write_chunks(self, key: str, encoded: Encoded) -> tuple[tuple[int, str], ...]:
        size = self._chunk_payload
        start_manager = hash(key) % self._n_managers
        plan = [
            ((start_manager + index) % self._n_managers, f"{INTERNAL_PREFIX}{SEPARATOR}chunk{SEPARATOR}{key}{SEPARATOR}{index}", offset)
            for index, offset in enumerate(range(0, max(encoded.nbytes, 1), size))
        ]
        self._check_room(key, encoded.nbytes, [manager for manager, _, _ in plan])
        chunks: list[tuple[int, str]] = []
        try:
            for manager, chunk_key, offset in plan:
                self._ddict_put(self._dict.manager(manager), chunk_key, encoded.data[offset:offset + size].tobytes(), encoded.nbytes)
                chunks.append((manager, chunk_key))
        except BaseException:
            self._free(Entry(encoded.kind, encoded.header, encoded.nbytes, b"", chunks=tuple(chunks)))
            raise
        return tuple(chunks)

    def _check_room(self, key: str, nbytes: int, managers: list[int]) -> None:
        """Refuse a write the managers cannot hold: a full DDict manager blocks until its timeout instead of failing."""
        stats = self._dict.dstats
        needed: dict[int, int] = {}
        for manager in managers:
            needed[manager] = needed.get(manager, 0) + self.config.chunk_bytes
        for manager, bytes_needed in needed.items():
            usable = int(stats[manager].total_bytes * MANAGER_FULL_FRACTION) - stats[manager].total_used_bytes
            if bytes_needed > usable:
                self._raise_full(key, nbytes)

    def _raise_full(self, key: str, nbytes: int) -> None:
        capacity = self.config.ddict_bytes_per_node * self.config.nodes
        raise StoreFullError(
            f"No room for {key!r} ({nbytes:,} bytes) in the store {self.config.name!r}: its DDict holds "
            f"{capacity:,} bytes over {self._n_managers} manager(s) of {capacity // self._n_managers:,} bytes each"
        )

    def _value(self, key: str, entry: Entry, copy: bool, out: np.ndarray | None, map_location: str | None) -> Any:
        if not copy and out is None and entry.kind in IN_PLACE_KINDS and entry.buffer is not None and BufferPools.is_local(entry.buffer):
            try:
                return decode(entry.kind, entry.header, BufferPools.view(entry.buffer))
            except StaleBufferError:
                raise KeyError(f"{key!r} was deleted or overwritten while being read") from None
        return self._read(key, entry, out, map_location)

    def _read(self, key: str, entry: Entry, out: np.ndarray | None, map_location: str | None) -> Any:
        if out is not None:
            if entry.kind != "numpy":
                raise TypeError(f"{key!r} holds a {entry.kind} value; out= works for numpy arrays only")
            if not out.flags.c_contiguous or out.nbytes != entry.nbytes or out.dtype != np.dtype(entry.header[0]):
                raise ValueError(f"out= must be a contiguous {np.dtype(entry.header[0])} array of {entry.nbytes} bytes for {key!r}")
            target = out.reshape(-1).view(np.uint8)
        else:
            target = np.empty(entry.nbytes, dtype=np.uint8)
        self._read_bytes(key, entry, target)
        value = decode(entry.kind, entry.header, target, map_location)
        return out.reshape(entry.header[1]) if out is not None else value

    def _read_bytes(self, key: str, entry: Entry, target: np.ndarray) -> None:
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
        threads = min(MAX_CHUNK_READ_THREADS, os.cpu_count() or 1, self._n_managers)
        if min(threads, len(chunks)) <= 1:
            for index, chunk in enumerate(chunks):
                read_chunk(self._dict, chunk, index, self._chunk_payload, target)
            return
        with self._lock:
            if self._chunk_readers is None:
                self._chunk_readers = ChunkReaders(self._dict.serialize(), threads)
        self._chunk_readers.read(chunks, self._chunk_payload, target)

    def _entry(self, key: str) -> Entry:
        try:
            entry = self._dict[key]
        except KeyError:
            raise KeyError(key) from None
        return entry

    def _wait_entry(self, key: str, timeout: float) -> Entry:
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

    def _exists(self, key: str) -> bool:
        return key in self._dict

    def _delete(self, key: str) -> None:
        try:
            entry = self._dict.pop(key)  # read and remove in one round trip
        except KeyError:
            raise KeyError(key) from None
        self._free(entry)

    def _free(self, entry: Entry) -> None:
        if entry.buffer is not None:
            try:
                BufferPools.free(entry.buffer)
            except StaleBufferError:
                pass  # a concurrent writer of the same key freed it first
        for manager, chunk_key in entry.chunks or ():
            try:
                del self._dict.manager(manager)[chunk_key]
            except KeyError:
                pass

    def _all_keys(self) -> Iterator[str]:
        return (k for k in self._dict.keys() if isinstance(k, str) and not k.startswith(INTERNAL_PREFIX))


_attached: dict[str, DDictStore] = {}
_attached_lock = threading.Lock()


CREATE_ATTEMPTS = 2


def create_ddict(managers_per_node: int, nodes: int, total_bytes: int, timeout: float, name: str) -> DDict:
    """A new DDict; StoreError if ``CREATE_ATTEMPTS`` tries in a row are not up within ``timeout`` s each.

    DDict's constructor waits without a timeout for its orchestrator, and with dragonhpc 0.15 a start-up
    now and then never completes (twice in CI on a loaded 2-core machine, with the orchestrator running):
    such a try is logged with the stage it stopped at and abandoned (its processes go with the runtime),
    and a DDict under a fresh name is started. A try whose orchestrator exits is abandoned at once.
    """
    stages: list[str] = []
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try_name = name if attempt == 1 else f"{name}-{attempt}"
        with keep_root_logging():  # again here: an abandoned try never leaves its own keep_root_logging block
            ddict, stage = _try_create_ddict(managers_per_node, nodes, total_bytes, timeout, try_name)
        if ddict is not None:
            return ddict
        stages.append(stage)
        logger.warning(f"DDict {try_name!r} (try {attempt} of {CREATE_ATTEMPTS}) did not start: {stage}")
    raise StoreError(f"The DDict {name!r} did not start in {CREATE_ATTEMPTS} tries: {'; '.join(stages)}")


def _try_create_ddict(managers_per_node: int, nodes: int, total_bytes: int, timeout: float,
                      name: str) -> tuple[DDict | None, str]:
    """The DDict, or None and the stage its start-up stopped at."""
    ddict = DDict.__new__(DDict)  # created here so its orchestrator can be watched while __init__ waits on it
    finished = threading.Event()
    failed: list[BaseException] = []

    def create() -> None:
        try:
            with keep_root_logging():
                ddict.__init__(managers_per_node, nodes, total_bytes, timeout=timeout, name=name)
        except BaseException as exc:  # handed to the caller
            failed.append(exc)
        finally:
            finished.set()

    threading.Thread(target=create, name=f"create-ddict-{name}", daemon=True).start()
    deadline = time.monotonic() + timeout
    try:
        while not finished.wait(1.0) and time.monotonic() < deadline:
            orchestrator = _orchestrator(ddict)
            if orchestrator is not None and orchestrator.returncode is not None:
                return None, f"its orchestrator (puid {orchestrator.puid}) exited with {orchestrator.returncode}"
    except BaseException:  # interrupted (a signal during set-up): destroy the DDict once it is up, not leave it unowned
        if finished.wait(timeout) and not failed:
            call_with_deadline(ddict.destroy, timeout, f"destroy-ddict-{name}")
        raise
    if failed:
        raise failed[0]
    if finished.is_set():
        return ddict, ""
    orchestrator = _orchestrator(ddict)
    if orchestrator is None:
        return None, f"its orchestrator process was not started within {timeout:.0f} s"
    if getattr(ddict, "_orc_connector", None) is None:
        return None, f"its orchestrator (puid {orchestrator.puid}) runs but did not report within {timeout:.0f} s"
    return None, f"its orchestrator reported but its managers were not up within {timeout:.0f} s"


def _orchestrator(ddict: DDict) -> Process | None:
    """The DDict's orchestrator process once started (DDict's constructor sets the attribute before it starts it)."""
    process = getattr(ddict, "_orc_proc", None)
    return process if getattr(process, "_descr", None) is not None else None


def attached(handle: str) -> DDictStore:
    """The store behind ``handle``, attached once per process: for task functions, which run many times in
    one long-lived worker and should not pay an attach (a DDict round trip) per task."""
    with _attached_lock:
        if handle not in _attached:
            _attached[handle] = DDictStore.attach(handle)
        return _attached[handle]
