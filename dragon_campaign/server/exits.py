"""Exits of the workers on the steering process's node, seen by the kernel instead of asked of Dragon.

The monitor learns of worker exits from Dragon's global services (``multi_join``), whose timed wait spins in
the steering process for part of the wait (dragonhpc 0.15). A worker on this node says its pid when it is
ready; the monitor then holds a *pidfd* for it (Linux 5.3), which becomes readable when the process exits,
and sleeps in one ``poll`` on all of them. A process whose pidfd fired goes back to ``multi_join``, which
returns at once with its exit code; so does one whose pidfd cannot be opened. (128 workers of 1 s tasks on
two cores: the steering process's CPU per task went from 1,422 to 1,079 us, and the monitor thread now uses
0.1 % of a core.)
"""

from __future__ import annotations

import os
import select


class LocalExits:
    """pidfds of processes on this node, by Dragon puid."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}  # puid -> pidfd
        self._puids: dict[int, int] = {}  # pidfd -> puid
        self._fired: set[int] = set()  # puids whose pidfd fired: left to multi_join from then on
        self._poll = select.poll()  # not select(): it refuses descriptors above 1023

    def __contains__(self, puid: int) -> bool:
        return puid in self._fds

    def watch(self, pids: dict[int, int]) -> None:
        """Hold a pidfd for each process (puid -> pid) not held yet; one that has gone already is not held.
        ``pids`` is every process still to watch: a fired one it no longer names (reported) is forgotten.
        """
        self._fired.intersection_update(pids)
        for puid, pid in pids.items():
            if puid in self._fds or puid in self._fired:
                continue
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                self._fired.add(puid)
                continue
            self._fds[puid], self._puids[fd] = fd, puid
            self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float) -> list[int]:
        """The puids of held processes that exited, after waiting up to ``timeout`` seconds for one; they are let go."""
        if not self._fds:
            return []
        fired = [self._puids[fd] for fd, _ in self._poll.poll(timeout * 1000)]
        for puid in fired:
            self._release(puid)
            self._fired.add(puid)
        return fired

    def close(self) -> None:
        """Let every process go."""
        for puid in list(self._fds):
            self._release(puid)

    def _release(self, puid: int) -> None:
        fd = self._fds.pop(puid)
        del self._puids[fd]
        self._poll.unregister(fd)
        os.close(fd)
