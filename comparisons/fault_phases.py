"""The named phases of a campaign in which a fault is injected, and how a try knows it is in one.

A phase is read from what the run writes as it goes, never guessed from the clock: its journal (SQLite in
WAL mode, read here read-only while the run writes it), its checkpoint directory and whether its command
is alive. A try waits until the phase begins, waits a random moment more within it, checks the phase
still holds, injects the fault, and checks again: the fault *fired in the phase* only if the phase held
on both sides of the injection (and the fault found what it acts on).

* ``set-up``: the campaign process is logging, and no task has finished yet;
* ``after the first result``: at least one simulation has finished, the campaign has not;
* ``during training``: a retraining task is in flight (submitted, not finished);
* ``during a checkpoint write``: the campaign checkpoints itself at ``--stop-after`` and its
  ``checkpoint.partial/`` is being written;
* ``during shutdown``: the budget's last simulation has finished (or the journal says how the campaign
  ended): the campaign winds down and the job comes down.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from faults import BUDGET, Run, sleep_watching

REACH_LIMIT_S = 300.0  # a phase that has not begun by then does not come in this try


def _query(run_dir: Path, sql: str) -> int | str | None:
    """One value from the run's journal (None while there is none)."""
    path = run_dir / "journal.sqlite"
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0) as db:
            row = db.execute(sql).fetchone()
    except sqlite3.Error:  # being created
        return None
    return None if row is None else row[0]


def finished(run_dir: Path, method: str) -> int:
    """Tasks of ``method`` that finished (in any job of the run)."""
    return int(_query(run_dir, f"SELECT COUNT(*) FROM tasks WHERE method = '{method}' AND state = 'completed'") or 0)


def in_flight(run_dir: Path, method: str) -> int:
    """Tasks of ``method`` submitted in the latest job and not finished."""
    return int(_query(run_dir, f"SELECT COUNT(*) FROM tasks WHERE method = '{method}' AND state = 'submitted' "
                               "AND session = (SELECT MAX(session) FROM sessions)") or 0)


def outcome(run_dir: Path) -> str | None:
    """How the latest job ended, once the campaign has said so."""
    value = _query(run_dir, "SELECT outcome FROM sessions ORDER BY session DESC LIMIT 1")
    return None if value is None else str(value)


@dataclass(frozen=True)
class Phase:
    """Where in a campaign a fault lands."""

    name: str
    begun: Callable[[Run], bool]
    condition: Callable[[Run], bool]  # what the run has written says it is in the phase (checked before and after the fault)
    within_s: float  # the random moment: up to this long after the phase began
    arguments: tuple[str, ...] = ()  # of run.sh, to bring the phase about

    def holds(self, run: Run) -> bool:
        return _alive(run) and self.condition(run)

    def arguments_for(self, rng: random.Random) -> list[str]:
        return [argument.format(stop_after=f"{rng.uniform(2.0, 4.0):.1f}") for argument in self.arguments]


def _alive(run: Run) -> bool:
    return run.terminal.process.poll() is None


def _logging(run: Run) -> bool:
    return (run.run_dir / "campaign.log").exists()


def _before_results(run: Run) -> bool:
    return _query(run.run_dir, "SELECT COUNT(*) FROM tasks WHERE state = 'completed'") in (None, 0)


def _results_began(run: Run) -> bool:
    return finished(run.run_dir, "simulate") >= 1


def _campaign_going(run: Run) -> bool:
    return finished(run.run_dir, "simulate") < BUDGET and outcome(run.run_dir) is None


def _training(run: Run) -> bool:
    return in_flight(run.run_dir, "train") > 0


def _checkpointing(run: Run) -> bool:
    return (run.run_dir / "checkpoint.partial").exists()


def _shutting_down(run: Run) -> bool:
    return finished(run.run_dir, "simulate") >= BUDGET or outcome(run.run_dir) is not None


PHASES: dict[str, Phase] = {phase.name: phase for phase in (
    Phase("set-up", _logging, _before_results, 2.0),
    Phase("after the first result", _results_began, _campaign_going, 3.0),
    Phase("during training", _training, _training, 0.3),
    Phase("during a checkpoint write", _checkpointing, _checkpointing, 0.0, ("--stop-after", "{stop_after}")),
    Phase("during shutdown", _shutting_down, _shutting_down, 0.3),
)}


def enter(run: Run, phase: Phase, rng: random.Random) -> str | None:
    """Wait until ``phase`` has begun, then a random moment within it; None if it held then, else why not."""
    deadline = time.monotonic() + REACH_LIMIT_S
    poll = 0.002 if phase.within_s == 0 else 0.05  # a checkpoint write can be short: look often
    while not phase.begun(run):
        if not _alive(run):
            return f"the run ended before {phase.name}"
        if time.monotonic() > deadline:
            return f"{phase.name} did not begin within {REACH_LIMIT_S:.0f} s"
        if poll >= 0.05:
            sleep_watching(run, poll)
        else:
            time.sleep(poll)
    if phase.within_s:
        sleep_watching(run, rng.uniform(0.0, phase.within_s))
    return None if phase.holds(run) else f"{phase.name} was over before the fault"
