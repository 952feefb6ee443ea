"""Large values in Dragon managed memory on the writer's node; only a small descriptor goes into the DDict.

Why: a plain DDict put/get of a large array serializes it through the manager's channels (measured here
at about 0.7 GB/s for 128 MB), slower than reading a file from the page cache. A managed-memory
allocation, by contrast, is attached by any process on the same node from its serialized descriptor in
microseconds and read at memcpy speed.

Each node gets one buffer pool per store, created through Dragon's global services by the first process
that writes on that node (``soft`` creation under a name derived from the store and the node, so
concurrent writers agree on one pool). Global services own the pools, so the runtime reclaims them even
if the campaign dies; ``destroy_pools`` removes them when the store is destroyed.

Dragon gives every allocation a unique id and refuses to attach a descriptor whose allocation was freed.
A reader holding only a reference (no DDict lookup) therefore attaches before copying and again after: if
the second attach succeeds, the allocation was never freed during the copy, so the bytes are the value's.

Copies go in blocks of 8 MB: one ``memcpy`` of a whole 256 MB buffer ran 3x slower here than the same
copy in blocks (glibc switches to non-temporal stores above a size tied to the cache, which loses badly on
freshly mapped pages), and blocks let threads share a copy on nodes with cores to spare.

Every process maps the pool's shared memory page by page, on first touch: writing a 39 MB value into pool
memory this process had not touched ran at about 1 GB/s here, against 13 GB/s once mapped. ``map_local``
maps the whole pool into the calling process in one ``madvise(MADV_POPULATE_WRITE)`` (about 0.3 s per GB
here, and about 1 s per GB for the first process on a node, which also allocates the pages), so that a
long-lived worker pays it once instead of on its first writes and in-place reads.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from dragon.globalservices import pool as gs_pool
from dragon.managed_memory import DragonMemoryError, MemoryAlloc, MemoryPool
from dragon.native.machine import current

from ddict_store.errors import StoreError, StoreFullError
from ddict_store.workarounds import pool_segment_prefix, register_segments

logger = logging.getLogger(__name__)
POOL_CREATION_TIMEOUT_S = 60.0
COPY_BLOCK_BYTES = 8 * 2**20
PARALLEL_COPY_BYTES = 64 * 2**20  # copies above this size are split across threads
COPY_THREADS = max(1, min(4, (os.cpu_count() or 1) // 2))  # on a 2-core node a second copy thread only contends
MADV_POPULATE_WRITE = 23  # Linux 5.14 and later


class StaleBufferError(KeyError):
    """The allocation a reference points to was freed (its key was deleted or overwritten)."""


@dataclass(frozen=True)
class BufferRef:
    """Where a value's bytes live: a managed-memory allocation on one node."""

    host_uid: int
    descriptor: bytes
    nbytes: int


@dataclass(frozen=True)
class Allocation:
    """An allocation being filled by its writer: ``array`` is its memory (flat uint8), ``ref`` what readers attach."""

    memory: MemoryAlloc
    array: np.ndarray
    ref: BufferRef

    def free(self) -> None:
        """Give the memory back (for a writer that will not store it after all)."""
        self.memory.free()


@functools.cache
def local_host_uid() -> int:
    """This process's node (a global-services query, so asked once)."""
    return current().h_uid


class BufferPools:
    """The store's per-node managed-memory pools, as seen from one process."""

    def __init__(self, store_name: str, bytes_per_node: int) -> None:
        self.store_name = store_name
        self.bytes_per_node = bytes_per_node
        self._pool: MemoryPool | None = None
        self._lock = threading.Lock()

    def pool_name(self, host_uid: int) -> str:
        """A name unique to this store and node, short enough for Dragon (28 characters at most)."""
        return "dcs" + hashlib.sha1(f"{self.store_name}/{host_uid}".encode()).hexdigest()[:20]

    def _local_pool(self) -> MemoryPool:
        with self._lock:
            if self._pool is None:
                name = self.pool_name(local_host_uid())
                register_segments(pool_segment_prefix(name))
                descriptor = gs_pool.create(self.bytes_per_node, user_name=name, soft=True)
                deadline = time.monotonic() + POOL_CREATION_TIMEOUT_S
                while not descriptor.sdesc:  # another process on this node is still creating the pool
                    if time.monotonic() > deadline:
                        raise StoreError(f"The buffer pool {name} of this node was not ready within {POOL_CREATION_TIMEOUT_S} s")
                    time.sleep(0.01)
                    descriptor = gs_pool.query(name)
                self._pool = MemoryPool.attach(descriptor.sdesc)
            return self._pool

    def allocate(self, nbytes: int, key: str) -> Allocation:
        """A new allocation of ``nbytes`` on this node, for a writer that fills it itself (then stores its
        ``ref``, or calls ``free``).
        """
        pool = self._local_pool()
        try:
            allocation = pool.alloc(max(nbytes, 1))
        except Exception as exc:
            raise StoreFullError(
                f"No room for {key!r} ({nbytes:,} bytes) in the buffer pool of this node "
                f"(capacity {self.bytes_per_node:,} bytes, {pool.free_space:,} free): {exc}"
            ) from exc
        array = np.frombuffer(allocation.get_memview(), dtype=np.uint8, count=nbytes)
        return Allocation(allocation, array, BufferRef(local_host_uid(), bytes(allocation.serialize()), nbytes))

    def write(self, parts: Sequence[np.ndarray], key: str) -> BufferRef:
        """Copy flat uint8 ``parts``, back to back, into a new allocation on this node."""
        allocation = self.allocate(sum(part.nbytes for part in parts), key)
        try:
            offset = 0
            for part in parts:
                copy_bytes(allocation.array[offset:offset + part.nbytes], part)
                offset += part.nbytes
            return allocation.ref
        except BaseException:
            allocation.free()
            raise

    def used_bytes(self) -> int:
        """Bytes allocated in this node's pool (0 if no process wrote on this node yet)."""
        with self._lock:
            created = self._pool is not None
        if not created:
            try:
                gs_pool.query(self.pool_name(local_host_uid()))
            except gs_pool.PoolError:
                return 0
        pool = self._local_pool()
        return int(pool.size - pool.free_space)

    def map_local(self) -> bool:
        """Map this node's pool (creating it if needed) into this process; False where the kernel cannot.

        The pool's memory stays allocated while the pool exists, so only the page tables of this process
        are filled: the contents are not touched and concurrent readers and writers are unaffected.
        """
        pool = self._local_pool()
        probe = pool.alloc(1)
        try:
            start, end = _mapping_containing(probe.get_int_ptr())
        finally:
            probe.free()
        if _libc().madvise(start, end - start, MADV_POPULATE_WRITE) == 0:
            return True
        code = ctypes.get_errno()
        logger.warning(f"Could not map the buffer pool ahead of use ({errno.errorcode.get(code, code)}; "
                       "MADV_POPULATE_WRITE needs Linux 5.14): pages will be mapped on first touch")
        return False

    @staticmethod
    def is_local(ref: BufferRef) -> bool:
        """Whether the buffer lives on this node (readable here at memory speed)."""
        return ref.host_uid == local_host_uid()

    @staticmethod
    def read_into(ref: BufferRef, out: np.ndarray) -> None:
        """Copy the bytes into ``out`` (flat uint8): a private copy, since the allocation may be freed later.

        Raises:
            StaleBufferError: the allocation was freed before or during the copy.
        """
        allocation = _attach(ref)
        try:
            copy_bytes(out, np.frombuffer(allocation.get_memview(), dtype=np.uint8, count=ref.nbytes))
            _attach(ref).detach()  # still allocated after the copy, so it was never freed during it
        finally:
            allocation.detach()

    @staticmethod
    def view(ref: BufferRef) -> np.ndarray:
        """A read-only view of the bytes in place: no copy, valid until the allocation is freed."""
        view = np.frombuffer(_attach(ref).get_memview(), dtype=np.uint8, count=ref.nbytes)
        view.flags.writeable = False
        return view

    @staticmethod
    def free(ref: BufferRef) -> None:
        """Return the buffer's memory to its pool (StaleBufferError if it was freed already)."""
        _attach(ref).free()

    def destroy_pools(self, host_uids: list[int]) -> None:
        """Remove this store's pool on each of these nodes (those never written to do not exist)."""
        with self._lock:
            if self._pool is not None:
                self._pool.detach()
                self._pool = None
        for host_uid in host_uids:
            try:
                gs_pool.destroy(gs_pool.query(self.pool_name(host_uid)).m_uid)
            except gs_pool.PoolError:
                pass  # never created on that node


def _mapping_containing(address: int) -> tuple[int, int]:
    """Start and end of the memory mapping of this process that holds ``address`` (from /proc/self/maps)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(bound, 16) for bound in line.split(" ", 1)[0].split("-"))
            if start <= address < end:
                return start, end
    raise StoreError(f"No mapping of this process holds address {address:#x}")


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def _attach(ref: BufferRef) -> MemoryAlloc:
    try:
        return MemoryAlloc.attach(ref.descriptor)
    except DragonMemoryError:
        raise StaleBufferError("The buffer of this value was freed (its key was deleted or overwritten)") from None


def copy_bytes(out: np.ndarray, source: np.ndarray) -> None:
    """Memcpy in blocks of ``COPY_BLOCK_BYTES``, split across threads for large buffers (numpy releases the GIL)."""
    threads = COPY_THREADS if source.nbytes >= PARALLEL_COPY_BYTES else 1
    bounds = np.linspace(0, source.nbytes, threads + 1, dtype=np.int64)

    def copy_range(part: int) -> None:
        for start in range(int(bounds[part]), int(bounds[part + 1]), COPY_BLOCK_BYTES):
            end = min(start + COPY_BLOCK_BYTES, int(bounds[part + 1]))
            np.copyto(out[start:end], source[start:end])

    if threads == 1:
        copy_range(0)
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(copy_range, range(threads)))
