"""The memory-neutral protocol of the data-path benchmarks: no path pays this machine's first-touch cost
in a timed region while another is spared it.

On a virtual machine whose host backs guest memory lazily, writing a page for the first time can cost ten
times more than writing it again (0.35 GB/s against 4-9 GB/s here), so whichever path happens to write
into fresh memory loses. Every process of every path therefore keeps the memory it frees and allocates
from it again (``keep_freed_memory``), and touches, in its untimed warm-up, as much memory as its timed
work will allocate (``prefault``): the Dragon paths' buffer pool is mapped by ``map_buffers``, the file
system's page cache and Ray's object store are written once and emptied, as the workflow's set-up does.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters


@functools.cache
def keep_freed_memory() -> None:
    """Make this process keep the memory it frees and serve large allocations from it (glibc's
    ``M_MMAP_MAX=0``: no block gets its own mapping; ``M_TRIM_THRESHOLD`` 2 GiB: the heap is not given
    back). Filling a reused 256 MB block ran at 16 GB/s here with this, 4.5 GB/s from a new mapping.
    """
    libc = ctypes.CDLL(None)
    if not (libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)):
        raise RuntimeError("mallopt refused the memory-neutral settings (not glibc?)")


def prefault(nbytes: int) -> None:
    """Touch ``nbytes`` of heap and free them again: later allocations up to that size reuse warm pages."""
    keep_freed_memory()
    if nbytes > 0:
        np.ones(nbytes, dtype=np.uint8)  # written, then freed into the kept heap
