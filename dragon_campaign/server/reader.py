"""Reading a Dragon queue without spinning the cores of a crowded node.

dragonhpc 0.15's blocking ``Queue.get`` waits adaptively: it spins on a core for about 55 ms before it
sleeps (a blocked get costs 80 ms of CPU in its first 3 s, whatever wait mode the channel is asked for).
A reader whose messages come more often than that spins all the time: a worker fed a task every few
milliseconds used 90 % of a core doing nothing; four such workers on two cores left the steering process,
whose result receiver spins the same way, less than one core; 128 workers on two cores, each spinning
55 ms whenever it waited, kept the load at 113 and the workers 45 % busy with 1 s tasks.

On a node with a core to spare for every process that wants one, ``QueueReader`` simply blocks in
Dragon's get (the spin costs nothing there and answers fastest). On a *crowded* node (more workers, and
on the primary node the steering process, than cores) it never does. On the steering process's node, the
workers and the result receiver sleep on doorbells that the senders ring after each put (see
``.crowded``), and look at their queue after each wake-up. Elsewhere (workers of other nodes) the
reader looks at the channel's message count between sleeps and takes a message once one is there. Looks
cost CPU (``LOOK_CPU_S``) and latency (each sleep is at least about 80 us here: a no-op round trip went
from 0.47 to 0.80 ms), so:

* a worker's shortest sleep grows with the crowd, all waiting workers' looks together kept to
  ``LOOK_SHARE`` of the node's cores (128 workers on 2 cores: a look every 2 ms; 4 workers: 75 us);
* the sleep stays shortest for ``FAST_FOR_S`` after the wait began (a sequential thinker's next task comes
  within it), then doubles up to ``MAX_POLL_S`` (or the shortest, if longer), and after ``IDLE_AFTER_S``
  without a message up to ``IDLE_POLL_S``: a worker idle for long looks ten times a second.

A reader on a bell may first look for a moment (``spin_s``): a worker of a sequential thinker gets its next
task a few hundred microseconds after its last result, the result receiver the next result of a burst, and
sleeping for it costs a wake-up (about 90 us more per hop here, results/wakeup_cost.md). It looks only while
its waits stay that short (one longer wait and it sleeps at once until a short one again), and between looks
gives way to any other process that wants its core, so a crowded node busy with longer tasks pays nothing.
Its price is in the process that looks: it holds the GIL but for each ``sched_yield``, and Python seldom
hands the GIL to a waiting thread in so short a gap, so the receiver's look may hold up the thinker's
threads (a relay's, its other thread) until the look ends: 0.5 ms at most, after a burst of results.

A worker that looks also notices when its parent (Dragon's local services) is gone, and exits instead of
waiting forever. A channel on another node is always read with the blocking get: looking at it would be
a call through the transport each time.
"""

from __future__ import annotations

import os
import time
from typing import Any

from dragon_campaign.server.crowded import Doorbell

POLL_S = 20e-6  # the shortest sleep asked between looks (the kernel makes it about 80 us here)
LOOK_CPU_S = 15e-6  # CPU time of one look and its sleep call (measured here)
LOOK_SHARE = 0.5  # the share of a crowded node's cores its waiting workers may spend looking
FAST_FOR_S = 0.002  # how long a wait keeps the shortest sleep
MAX_POLL_S = 0.001  # then the sleep doubles up to this (or the shortest, if longer)
IDLE_AFTER_S = 1.0  # a wait this long: the reader is idle, its sleep doubles up to IDLE_POLL_S
IDLE_POLL_S = 0.1
SPIN_S = 500e-6  # how long a reader whose waits are short looks before it sleeps on its bell


class Orphaned(SystemExit):
    """The process that started this worker is gone (the runtime was killed): nothing will come any more."""


class QueueReader:
    """``get()`` from a Dragon queue: blocking on a node with cores to spare, looking between sleeps on a crowded one."""

    def __init__(self, queue: Any, crowded: bool = False, shortest_s: float = POLL_S, watch_parent: bool = False,
                 bell: Doorbell | None = None, bell_timeout_s: float = IDLE_POLL_S, spin_s: float = 0.0) -> None:
        self.queue = queue
        self.crowded = crowded  # the owner may change it (a pool joined the node)
        self.shortest_s = shortest_s
        self.bell = bell
        self.bell_timeout_s = bell_timeout_s  # the longest sleep on the bell between looks (shorter where some senders never ring)
        self.spin_s = spin_s
        self._spinning = spin_s > 0  # the last wait was short enough for looking to have caught it
        self._parent = os.getppid() if watch_parent else None
        channel = getattr(queue, "_main_channel", None)  # the FLI's main channel (dragon.native.queue, 0.15)
        self._channel = channel if channel is not None and getattr(channel, "is_local", False) else None

    def get(self) -> Any:
        """The next message, waiting as long as it takes."""
        channel = self._channel
        if self.crowded and channel is not None and self.bell is not None:
            if not channel.num_msgs:
                self._wait_for_bell(channel, self.bell)
        elif self.crowded and channel is not None and not channel.num_msgs:
            started = time.monotonic()
            pause = self.shortest_s
            busy_cap = max(MAX_POLL_S, self.shortest_s)
            while not channel.num_msgs:
                time.sleep(pause)
                waited = time.monotonic() - started
                if waited > FAST_FOR_S:
                    pause = min(2 * pause, busy_cap if waited < IDLE_AFTER_S else max(IDLE_POLL_S, busy_cap))
                self._check_parent()
        return self.queue.get()

    def _wait_for_bell(self, channel: Any, bell: Doorbell) -> None:
        started = time.perf_counter()
        if self._spinning:
            deadline = started + self.spin_s
            while time.perf_counter() < deadline:
                os.sched_yield()  # any other process that wants this core first
                if channel.num_msgs:
                    return
        while not channel.num_msgs:
            bell.wait(self.bell_timeout_s)
            self._check_parent()
        self._spinning = time.perf_counter() - started <= self.spin_s

    def take_ready(self, limit: int) -> list[Any]:
        """Up to ``limit`` messages already in the queue, without waiting (none from a queue of another node)."""
        taken: list[Any] = []
        channel = self._channel
        while channel is not None and len(taken) < limit and channel.num_msgs:
            taken.append(self.queue.get())
        return taken

    def _check_parent(self) -> None:
        if self._parent is not None and os.getppid() != self._parent:
            raise Orphaned(f"the parent process {self._parent} of this worker is gone")


def shortest_sleep(waiters: int, cores: int) -> float:
    """A waiting worker's shortest sleep between looks when ``waiters`` processes wait on ``cores`` cores."""
    return max(POLL_S, LOOK_CPU_S * waiters / (LOOK_SHARE * max(cores, 1)))
