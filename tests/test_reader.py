"""A crowded node's reader on a real Dragon queue and doorbell (dragon_campaign/server/reader.py): it looks for a
moment before it sleeps on its bell, and only while its waits stay short."""

from __future__ import annotations

import threading
import time

from dragon.native.queue import Queue

from dragon_campaign.server.crowded import Doorbell, Ringer, new_bell
from dragon_campaign.server.reader import QueueReader

SPIN_S = 0.5  # long enough here that a put after LATE_S always falls inside it, however loaded the machine
LATE_S = 0.05
BELL_S = 3.0  # a message nobody rings for waits this long on a reader that does not look


def timed_get(reader: QueueReader, queue: Queue, after: float, ring: Ringer | None, address: str) -> float:
    """Put a message ``after`` seconds into the reader's wait (ringing its bell or not); how long the get took."""

    def put() -> None:
        time.sleep(after)
        queue.put("task")
        if ring is not None:
            ring.ring(address)

    putter = threading.Thread(target=put)
    start = time.monotonic()
    putter.start()
    assert reader.get() == "task"
    putter.join()
    return time.monotonic() - start


def test_a_reader_with_short_waits_looks_before_it_sleeps_and_one_long_wait_stops_it():
    address, ringer, queue = new_bell(), Ringer(), Queue()
    reader = QueueReader(queue, crowded=True, bell=Doorbell(address), bell_timeout_s=BELL_S, spin_s=SPIN_S)
    try:
        assert timed_get(reader, queue, LATE_S, None, address) < BELL_S / 2  # unrung, but it was looking
        assert timed_get(reader, queue, SPIN_S + 0.5, ringer, address) < BELL_S / 2  # a long wait, ended by the ring
        assert timed_get(reader, queue, LATE_S, None, address) >= BELL_S * 0.9  # so it slept at once: only the bell's timeout ended it
        assert timed_get(reader, queue, LATE_S, ringer, address) < BELL_S / 2  # a short wait again (rung)...
        assert timed_get(reader, queue, LATE_S, None, address) < BELL_S / 2  # ...and it looks again
    finally:
        ringer.close()
        queue.close()


def test_a_reader_without_a_spin_sleeps_on_its_bell_at_once():
    address, ringer, queue = new_bell(), Ringer(), Queue()
    reader = QueueReader(queue, crowded=True, bell=Doorbell(address), bell_timeout_s=BELL_S)
    try:
        assert timed_get(reader, queue, LATE_S, ringer, address) < BELL_S / 2
        assert timed_get(reader, queue, LATE_S, None, address) >= BELL_S * 0.9
    finally:
        ringer.close()
        queue.close()
