"""One try of each hard kill of comparisons/hard_kill.py: SIGKILL of a whole campaign (after its first result,
during its resume, while its thinker's snapshot is written), then --resume; every invariant must hold.

``python comparisons/hard_kill_table.py`` runs the full table (10 tries of each, results/hard_kill.md)."""

from __future__ import annotations

import pytest
from hard_kill import TRIES, try_hard_kill


@pytest.mark.parametrize(("campaign", "phase"), TRIES, ids=[f"{campaign}: {phase}" for campaign, phase in TRIES])
def test_a_hard_kill_loses_nothing(campaign, phase, tmp_path):
    outcome = try_hard_kill(campaign, phase, tmp_path, seed=sum(map(ord, campaign + phase)))
    assert all(outcome.held.values()), f"{outcome.what}: {outcome.held}; {outcome.details}"
