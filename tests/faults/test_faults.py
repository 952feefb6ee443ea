"""One try of each fault of comparisons/fault_actions.py on a small real campaign, each in a named phase
(every phase at least once); the fault must fire in its phase and every invariant must hold.

``python comparisons/fault_injection.py`` runs the full table (every fault in every phase where it applies,
10 tries of each: results/fault_injection.md)."""

from __future__ import annotations

import pytest
from fault_actions import APPLIES, HARD_KILL
from faults import try_fault

CHOSEN = [
    ("Ctrl-C in the terminal", "during a checkpoint write"),
    ("Ctrl-C twice in the terminal", "during training"),
    ("SIGINT to the process group", "set-up"),
    ("SIGTERM to the process group", "during shutdown"),
    ("SIGKILL of a worker", "during training"),
    ("SIGKILL of a DDict manager", "after the first result"),
    ("worker hung past the shutdown grace", "after the first result"),
    ("task out of memory (cgroup)", "during training"),
    ("full CPU load, then Ctrl-C", "after the first result"),
    (HARD_KILL, "during a checkpoint write"),
]


def test_the_choice_covers_every_fault_and_phase():
    assert {fault for fault, _ in CHOSEN} == set(APPLIES)
    assert {phase for _, phase in CHOSEN} == {phase for phases in APPLIES.values() for phase in phases}
    assert all(phase in APPLIES[fault] for fault, phase in CHOSEN)


@pytest.mark.parametrize(("fault", "phase"), CHOSEN, ids=[f"{fault}: {phase}" for fault, phase in CHOSEN])
def test_fault_keeps_every_invariant(fault, phase, tmp_path):
    outcome = try_fault(fault, phase, tmp_path, seed=sum(map(ord, fault + phase)))
    assert all(outcome.held.values()), f"{outcome.what}: exit {outcome.exit_status}, then {outcome.finishing_statuses}; {outcome.held}; {outcome.details}"
