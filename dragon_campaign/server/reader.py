"""Reading a Dragon queue without spinning a core while messages keep coming.

dragonhpc 0.15's blocking ``Queue.get`` waits adaptively: it spins on a core for about 55 ms before it
sleeps (measured here: a blocked get costs 80 ms of CPU in its first 3 s, whatever the wait mode asked of
the channel). A reader whose messages come more often than that spins all the time: a worker fed a task
every few milliseconds used 90 % of a core doing nothing, and four such workers on two cores left the
steering process, whose result receiver spins the same way, less than one core. So while messages keep
coming, :class:`QueueReader` looks at the channel's message count between sleeps (about 15 us of CPU per
look), short for ``FAST_FOR_S`` after the last message (a sequential thinker's next task comes within it),
then doubling up to ``MAX_POLL_S``, and takes a message once one is there; after
``block_after_s`` without one it falls back to the blocking get (one spin, then the kernel). Looking costs latency (each sleep is at least about 80 us
here: a no-op round trip went from 0.47 to 0.80 ms), so a reader looks only while its node is *crowded*
(more workers, with the steering process on its node, than cores: the spin would take a core from a process
with work to do); on a node with a core to spare it blocks at once. A channel on another node is always
read with the blocking get: looking at it would be a call through the transport each time.
"""

from __future__ import annotations

import time
from typing import Any

POLL_S = 20e-6  # the first sleep asked between looks (the kernel makes it about 80 us here)
FAST_FOR_S = 0.002  # how long the reader keeps looking every POLL_S
MAX_POLL_S = 0.001  # the longest: a message waits at most this long for a reader that looks
BLOCK_AFTER_S = 0.05  # this long without a message: block in Dragon's get instead of looking


class QueueReader:
    """``get()`` from a Dragon queue, looking between short sleeps while the queue is busy and the node crowded."""

    def __init__(self, queue: Any, crowded: bool = True, block_after_s: float = BLOCK_AFTER_S) -> None:
        self.queue = queue
        self.crowded = crowded  # the owner may change it (a pool joined the node)
        self.block_after_s = block_after_s
        channel = getattr(queue, "_main_channel", None)  # the FLI's main channel (dragon.native.queue, 0.15)
        self._channel = channel if channel is not None and getattr(channel, "is_local", False) else None

    def get(self) -> Any:
        """The next message, waiting as long as it takes."""
        channel = self._channel
        if self.crowded and channel is not None and not channel.num_msgs:
            now = time.monotonic()
            slow_down, give_up = now + FAST_FOR_S, now + self.block_after_s
            pause = POLL_S
            while not channel.num_msgs and now < give_up:
                time.sleep(pause)
                now = time.monotonic()
                if now > slow_down:
                    pause = min(2 * pause, MAX_POLL_S)
        return self.queue.get()
