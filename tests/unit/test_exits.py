"""Worker exits seen through pidfds (dragon_campaign/server/exits.py), with real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from dragon_campaign.server.exits import LocalExits


def _pidfds() -> int:
    """This process's open pidfds (other fds may come and go meanwhile)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]"
        except OSError:
            pass
    return count


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_an_exit_ends_the_wait_at_once_and_names_only_that_process():
    first, second = _sleeper(), _sleeper()
    exits = LocalExits()
    try:
        exits.watch({11: first.pid, 22: second.pid})
        assert 11 in exits and 22 in exits
        start = time.monotonic()
        fired = exits.wait(0.2)  # both alive: the wait times out
        waited = time.monotonic() - start
        assert fired == [] and waited >= 0.19, (fired, waited, first.poll(), second.poll())
        first.kill()
        start = time.monotonic()
        fired = exits.wait(10.0)
        waited = time.monotonic() - start
        assert fired == [11] and waited < 5.0, (fired, waited, second.poll())
        assert 11 not in exits and 22 in exits  # let go: multi_join reports its exit code from now on
        exits.watch({11: first.pid})  # still listed by the monitor until that report: not held again
        assert 11 not in exits
    finally:
        exits.close()
        for process in (first, second):
            process.kill()
            process.wait()


def test_a_process_already_gone_is_not_held_and_close_releases_every_pidfd():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid no longer names a process
    alive = _sleeper()
    fds_before = _pidfds()
    exits = LocalExits()
    try:
        exits.watch({1: gone.pid, 2: alive.pid})
        assert 1 not in exits and 2 in exits
        assert _pidfds() == fds_before + 1
        exits.close()
        assert 2 not in exits
        assert _pidfds() == fds_before
        assert exits.wait(0.0) == []
    finally:
        alive.kill()
        alive.wait()
