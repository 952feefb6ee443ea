"""Doorbells and turns of a crowded node (dragon_campaign/server/crowded.py), with real sockets, files and processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from dragon_campaign.server.crowded import Crowding, Doorbell, Ringer, Turns, new_bell, new_turns, open_or_none


def test_a_ring_wakes_a_waiting_worker_at_once_and_a_ring_before_the_wait_is_not_lost():
    address = new_bell()
    bell, ringer = Doorbell(address), Ringer()
    try:
        ringer.ring(address)  # rung while the worker was busy: its next wait ends at once
        start = time.monotonic()
        bell.wait(5.0)
        assert time.monotonic() - start < 1.0
        start = time.monotonic()
        bell.wait(0.2)  # that ring was taken: this wait times out
        assert time.monotonic() - start >= 0.19
        threading.Timer(0.1, ringer.ring, args=(address,)).start()
        start = time.monotonic()
        bell.wait(5.0)
        assert 0.05 < time.monotonic() - start < 2.0
    finally:
        ringer.close()


def test_ringing_a_bell_nobody_holds_or_a_full_one_is_harmless():
    ringer = Ringer()
    try:
        ringer.ring(new_bell())  # a worker not started yet, or gone
        address = new_bell()
        bell = Doorbell(address)
        for _ in range(100_000):  # far more than the socket holds
            ringer.ring(address)
        bell.wait(0)
        start = time.monotonic()
        bell.wait(0.1)  # one wait drained every ring
        assert time.monotonic() - start >= 0.09
    finally:
        ringer.close()


def test_workers_take_turns_at_the_result_queue():
    """Two processes hold the lock for 0.5 s each: the second waits for the first (opened through /proc, as workers do)."""
    fd, path = new_turns()
    hold = ("import sys, time\nfrom dragon_campaign.server.crowded import Turns\nturns = Turns(sys.argv[1])\n"
            "with turns.turn():\n    print(time.time(), flush=True)\n    time.sleep(0.5)\n")
    try:
        holders = [subprocess.Popen([sys.executable, "-c", hold, path], stdout=subprocess.PIPE, text=True) for _ in range(2)]
        starts = sorted(float(holder.communicate(timeout=30)[0]) for holder in holders)
        assert all(holder.returncode == 0 for holder in holders)
        assert starts[1] - starts[0] >= 0.45
    finally:
        os.close(fd)


def test_a_node_is_crowded_when_more_processes_want_a_core_than_it_has():
    assert Crowding(3, 2).crowded and not Crowding(2, 2).crowded and not Crowding().crowded


def test_a_worker_goes_on_without_a_bell_or_turns_the_kernel_refuses(capfd):
    address = new_bell()
    taken = Doorbell(address)  # a second bind of the same abstract name fails
    assert taken is not None and open_or_none(Doorbell, address) is None
    assert open_or_none(Turns, "/proc/999999999/fd/3") is None  # no such process: its lock cannot be opened
    assert open_or_none(Turns, None) is None and open_or_none(Doorbell, None) is None
    assert capfd.readouterr().err.count("going on without") == 2
    fd, path = new_turns()
    try:
        turns = open_or_none(Turns, path)
        assert isinstance(turns, Turns)
        with turns.turn():
            pass
    finally:
        os.close(fd)
