"""What a new job takes from the journal of a run that ended without a checkpoint (SIGKILL, node loss, walltime).

Two ways on, depending on the thinker:

* **From a snapshot** (a thinker that implements ``checkpoint_state``): its most recent snapshot comes
  back, and with it every task of the journal the state does not account for: those it was waiting for
  then, and those it submitted after (its restored self has not made them yet, so ``restore_state`` must
  count them as submitted). Finished ones come back as results delivered again, the others are
  requeued with their latest priorities and their inputs as sent. Every task runs once: none is forgotten,
  none submitted twice.
* **By memoization** (any thinker): the thinker starts over and each of its submissions whose method and
  inputs match a task that finished is answered from the journal at once instead of run again (each
  finished task answers one submission, as Parsl's app cache would), so a thinker that decides the same
  way again replays its campaign up to where it was and goes on from there.

Methods registered with ``memoize=False`` (their work is a side effect, such as writing a store that ended
with the job) always run again. A result that is a ProxyStore proxy is never reused either. What a kill
loses is what the last group commit had not written: those tasks run again.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from dragon_campaign.journal.database import JOURNAL_FILE, Journal, connect
from dragon_campaign.models import FailureInformation, ResourceRequirements, Result, Timestamps, fill
from dragon_campaign.queues.waiting import WaitingTask

Memo = dict[tuple[str, bytes], deque[Result]]


class Restored(NamedTuple):
    """The thinker's state as its last snapshot saved it."""

    state: Any
    allocation: dict[str, int] | None
    at: float  # when it was taken (epoch seconds)


class Carried(NamedTuple):
    """What the journal hands a new job."""

    snapshot: Restored | None
    tasks: list[WaitingTask]  # requeued, with their ids and priorities
    results: list[Result]  # delivered again (finished, not taken by the thinker by the time of the snapshot)
    memo: Memo  # (method, digest) -> finished tasks that answer submissions

    @property
    def finished(self) -> int:
        """How many finished tasks can answer submissions."""
        return sum(len(results) for results in self.memo.values())


def journal_path(run_dir: Path) -> Path:
    """``<run-dir>/journal.sqlite``."""
    return Path(run_dir) / JOURNAL_FILE


def carried_from(run_dir: Path, session: int, from_snapshot: bool, memoizable: Callable[[str], bool],
                 topics: tuple[str, ...] | None = None) -> Carried:
    """Read what goes on from the journal of ``run_dir``.

    Args:
        session: The job now running (its own tasks, submitted before the thinker started, are not carried).
        from_snapshot: The thinker can restore a snapshot (it implements ``checkpoint_state``).
        memoizable: Whether a method's finished tasks may answer submissions.
        topics: From a snapshot, carry on only tasks of these topics (the thinker's ``resumable_topics``).
    """
    db = connect(journal_path(run_dir), readonly=True)
    db.row_factory = sqlite3.Row
    try:
        snapshot = db.execute("SELECT seq, at, state FROM snapshots WHERE session < ? ORDER BY n DESC LIMIT 1",
                              (session,)).fetchone() if from_snapshot else None
        tasks: dict[str, sqlite3.Row] = {row["task_id"]: row for row in db.execute("SELECT * FROM tasks WHERE session < ?", (session,))}
    finally:
        db.close()

    def completion(task_id: str) -> Result | None:
        row = tasks[task_id]
        source = tasks.get(row["answered_by"]) if row["state"] == "answered" else row
        if source is None or source["done"] is None or not source["final"]:
            return None
        result = _result(source)
        if source is not row:
            fill(result, task_id=task_id)
        return result

    memo: Memo = defaultdict(deque)
    if snapshot is None:
        for task_id, row in tasks.items():
            if row["state"] == "completed" and memoizable(row["method"]) and (result := completion(task_id)) is not None:
                memo[(row["method"], row["digest"])].append(result)
        return Carried(None, [], [], dict(memo))
    seq, at, blob = snapshot
    state, allocation, in_flight = pickle.loads(blob)
    requeue: list[WaitingTask] = []
    again: list[Result] = []
    for task_id, row in tasks.items():
        if task_id not in in_flight and (row["seq"] <= seq or row["state"] == "cancelled"):
            continue  # its result was taken before the snapshot, or the thinker withdrew it after
        if topics is not None and row["topic"] not in topics:
            continue
        carried = completion(task_id) or _waiting_task(row)
        if isinstance(carried, Result):
            again.append(carried)
        else:
            requeue.append(carried)
    return Carried(Restored(state, allocation, at), requeue, again, {})


def resume_script(journal: Journal) -> list[Result]:
    """For a script that drives the queues itself (no thinker): the results of what earlier jobs of the run
    finished (succeeded, or failed by themselves; not tasks a shutdown cut short), so that it submits only
    the rest. Values come back as they were, except those the journal could not keep (a ProxyStore proxy,
    whose data ended with its job; an unpicklable value): those as their JSON line wrote them. Unfinished
    tasks of earlier jobs will not finish (the script submits again what it needs); the journal says so.
    """
    db = connect(journal.path, readonly=True)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM tasks WHERE state = 'completed' AND (success OR final) AND done_session < ? ORDER BY seq",
                          (journal.session,)).fetchall()
    finally:
        db.close()
    journal.drop_earlier(set())
    return [_result(row) for row in rows]


def _result(row: sqlite3.Row) -> Result:
    """A finished task's result: its JSON line, with its value and inputs as they were (not as JSON wrote them)."""
    result = Result.model_validate_json(row["line"])
    if row["value"] is not None:
        fill(result, value=pickle.loads(row["value"]))
    if row["keep"] and row["inputs"] is not None:
        fill(result, inputs=pickle.loads(row["inputs"]))
    return result


def _waiting_task(row: sqlite3.Row) -> WaitingTask | Result:
    """A task to requeue as it was sent; a failed result if its inputs were too large to journal."""
    info, shape, max_retries = pickle.loads(row["info"]) if row["info"] is not None else ({}, (1, 1, 1), 0)
    result = Result(task_id=row["task_id"], method=row["method"], topic=row["topic"], keep_inputs=bool(row["keep"]), task_info=info,
                    resources=ResourceRequirements(node_count=shape[0], cpu_processes=shape[1], cpu_threads=shape[2]),
                    max_retries=max_retries, priority=row["priority"], timestamp=Timestamps(created=row["created"]))
    if row["inputs"] is None:
        fill(result, success=False, complete=True, failure_info=FailureInformation(
            exception="Not resumed: its inputs were larger than the journal keeps (inputs_limit), so it could not be requeued"))
        return result
    if row["keep"]:
        fill(result, inputs=pickle.loads(row["inputs"]))
    return WaitingTask(row["task_id"], row["method"], row["priority"], result, row["inputs"])
