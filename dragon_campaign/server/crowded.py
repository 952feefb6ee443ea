"""How the workers of a crowded node wait and send without spinning: a doorbell, and turns at the result queue.

A node is *crowded* when more processes want a core than it has (its workers and, on the primary node, the
steering process). Dragon's queue calls spin while they wait (dragonhpc 0.15), which costs nothing where
every process has a core and ruins a crowded node: the spinning processes take the cores the ones with work
need, and the steering process, one runnable process among a hundred, gets a sliver of one.

* **Doorbells.** A worker on the steering process's node that finds its task queue empty sleeps on a
  datagram socket in Linux's abstract namespace (no file to remove; the kernel releases the name when the
  process exits, however it exits), and the steering process, after it puts tasks on that worker's queue,
  sends one byte there. The steering process's result receiver sleeps on a doorbell of its own, which those
  workers ring after each result they put. No ring is lost: a sender puts before it rings, and a reader
  looks at its queue after every wake-up, so a put after its last look is followed by a byte that ends its
  next wait. A ring never sent (a put by someone else) costs at most the wait's timeout. A reader whose waits
  are short looks at its queue for a moment before it sleeps (see ``.reader``). (Looking at the
  queue every 2 ms instead, 128 workers on two cores kept both cores busy and the steering process got 3 %
  of one.) Each of those workers has a second doorbell, for cancellations: the thread that stops a
  cancelled task sleeps on it, and the steering process rings it after posting a cancellation (looking at
  the control queue 20 times a second while a task ran cost a worker 2 ms of CPU per 1 s task, a third of
  a core for 128 workers).
* **Turns.** Those workers put results on the one result queue one at a time, waiting for their turn in
  the kernel (an exclusive ``flock``): Dragon's put allocates from the node's memory pool under a lock
  that spins, and 128 workers putting at once spent their time there (128 workers of 0.05 s tasks ran
  93 tasks/s). The lock is a ``memfd`` of the steering process, opened through ``/proc``: there is no file
  to remove either.

A relayed pool's workers on another crowded node get a doorbell too, which their node's relay rings, and ring
the relay's (see ``.relay``). Other workers of other nodes keep looking at their queue between sleeps (see
``.reader``).
"""

from __future__ import annotations

import fcntl
import itertools
import os
import select
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple, TypeVar

T = TypeVar("T")

_names = itertools.count()


class Crowding(NamedTuple):
    """What a worker is told about its node when it starts."""

    wanting: int = 1  # processes that want a core there
    cores: int = 1
    bell: str | None = None  # its doorbell's address (a crowded node of the steering process, or a relayed worker's)
    cancel_bell: str | None = None  # its cancellations' doorbell (a crowded node of the steering process)
    turns: str | None = None  # the path of the result queue's lock (same)
    receiver: str | None = None  # the doorbell to ring after each put: the result receiver's, or the node's relay's

    @property
    def crowded(self) -> bool:
        """More processes want a core than the node has."""
        return self.wanting > self.cores


def new_bell() -> str:
    """A doorbell address unique on this node: the steering process's pid and a counter."""
    return f"dragon-campaign/{os.getpid()}/{next(_names)}"


def new_turns() -> tuple[int, str]:
    """The result queue's lock: an anonymous file of this process, and the path its node's processes open it by."""
    fd = os.memfd_create("dragon-campaign-result-turns")
    return fd, f"/proc/{os.getpid()}/fd/{fd}"


class Doorbell:
    """The worker's side: wait until rung (or a timeout)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + address)
        self._socket.setblocking(False)

    def wait(self, timeout: float | None) -> None:
        """Return once rung (at once if a ring came since the last wait) or after ``timeout`` seconds (None: no limit)."""
        if select.select([self._socket], [], [], timeout)[0]:
            try:
                while True:
                    self._socket.recv(64)
            except BlockingIOError:
                return


class Ringer:
    """The steering process's side: one socket rings every doorbell."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def ring(self, *addresses: str) -> None:
        """Wake the workers waiting at these addresses. A full bell (it was rung already) or one not yet, or no
        longer, there (a worker that has not started or has exited) needs no ring.
        """
        for address in addresses:
            try:
                self._socket.sendto(b"\0", "\0" + address)
            except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
                pass

    def close(self) -> None:
        """Close the socket (the task server's shutdown)."""
        self._socket.close()


class Turns:
    """A worker's side of the result queue's lock."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the lock for the block, sleeping until it is free."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


def open_or_none(kind: Callable[[str], T], address: str | None) -> T | None:
    """A worker's doorbell or turns at ``address``, or None where the kernel refuses it (no ``/proc`` of the
    steering process in a hardened container, an abstract name already taken): the worker then looks at its
    queue between sleeps, or puts without turns, instead of failing to start.
    """
    if address is None:
        return None
    try:
        return kind(address)
    except OSError as exc:
        print(f"dragon_campaign worker {os.getpid()}: no {kind.__name__.lower()} at {address!r} ({exc}); going on without",
              file=sys.stderr, flush=True)
        return None
