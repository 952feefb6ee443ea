"""ResourceCounter: allocation, acquisition, reallocation, cancellation (Colmena semantics)."""

import threading
import time

import pytest

from dragon_campaign import ResourceCounter


def test_allocate_acquire_release():
    rec = ResourceCounter(8, ["sim", "ml"])
    assert rec.unallocated_slots == 8
    assert rec.reallocate(None, "sim", 6)
    assert rec.reallocate(None, "ml", "all")
    assert (rec.allocated_slots("sim"), rec.allocated_slots("ml"), rec.unallocated_slots) == (6, 2, 0)
    assert rec.acquire("sim", 4)
    assert rec.available_slots("sim") == 2
    assert not rec.acquire("sim", 3, timeout=0.2)
    rec.release("sim", 4)
    assert rec.available_slots("sim") == 6


def test_reallocate_waits_for_slots_in_use():
    rec = ResourceCounter(2, ["sim", "ml"])
    rec.reallocate(None, "sim", 2)
    rec.acquire("sim", 2)
    moved = threading.Event()
    rec.reallocate("sim", "ml", 1, block=False, callback=moved.set)
    time.sleep(0.2)
    assert not moved.is_set(), "slots in use must not move"
    rec.release("sim", 1)
    assert moved.wait(2)
    assert rec.allocated_slots("ml") == 1 and rec.available_slots("ml") == 1


def test_acquire_cancelled_by_event():
    rec = ResourceCounter(1, ["sim"])
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    start = time.monotonic()
    assert not rec.acquire("sim", 1, cancel_if=cancel)
    assert time.monotonic() - start < 2


def test_unknown_task_type():
    rec = ResourceCounter(1, ["sim"])
    with pytest.raises(KeyError, match="Unknown task type 'nope'"):
        rec.acquire("nope", 1)
    with pytest.raises(ValueError):
        ResourceCounter(1, [None])
