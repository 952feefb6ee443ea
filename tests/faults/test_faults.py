"""One try of each fault of comparisons/faults.py on a small real campaign; every invariant must hold.

``python comparisons/fault_injection.py`` runs the full table (10 tries of each, results/fault_injection.md)."""

from __future__ import annotations

import pytest
from faults import FAULTS, try_fault


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_keeps_every_invariant(fault, tmp_path):
    outcome = try_fault(fault, tmp_path, seed=sum(map(ord, fault)))
    assert all(outcome.held.values()), f"{outcome.what}: exit {outcome.exit_status}; {outcome.held}; {outcome.details}"
