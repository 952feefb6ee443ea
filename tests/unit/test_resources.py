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


def test_allocation_is_restored_in_proportion_with_slots_in_use():
    """A checkpoint's allocation on a counter of another size: same shares, carried-on tasks hold slots."""
    before = ResourceCounter(4, ["sim", "ml"])
    before.reallocate(None, "sim", 3)
    before.reallocate(None, "ml", 1)
    saved = before.allocation()
    assert saved == {"sim": 3, "ml": 1, "None": 0}

    same = ResourceCounter(4, ["sim", "ml"])
    same.restore(saved, in_use={"sim": 2})
    assert (same.allocated_slots("sim"), same.available_slots("sim"), same.allocated_slots("ml"), same.unallocated_slots) == (3, 1, 1, 0)

    smaller = ResourceCounter(2, ["sim", "ml"])
    smaller.restore(saved, in_use={"sim": 3})  # three simulations carry on into a job with two slots
    assert (smaller.allocated_slots("sim"), smaller.allocated_slots("ml")) == (2, 0)
    assert smaller.available_slots("sim") == -1 and not smaller.acquire("sim", 1, timeout=0.2), "overdrawn until released"
    smaller.release("sim", 2)
    assert smaller.acquire("sim", 1, timeout=1)

    with pytest.raises(KeyError, match="Unknown task type 'gpu'"):
        ResourceCounter(2, ["sim"]).restore({"gpu": 2})
