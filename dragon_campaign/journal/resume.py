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
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from dragon_campaign.journal.database import JOURNAL_FILE, connect
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
    try:
        snapshot = db.execute("SELECT seq, at, state FROM snapshots WHERE session < ? ORDER BY n DESC LIMIT 1", (session,)).fetchone() if from_snapshot else None
        tasks = {row[0]: row[1:] for row in db.execute("SELECT task_id, seq, topic, method, priority, digest, task, state, answered_by "
                                                        "FROM tasks WHERE session < ?", (session,))}
        finished: dict[str, tuple[str, bytes | None, bool]] = {}
        for task_id, line, value, final in db.execute("SELECT task_id, line, value, final FROM completions ORDER BY n"):
            finished[task_id] = (line, value, bool(final))
    finally:
        db.close()

    def completion(task_id: str) -> Result | None:
        row = tasks.get(task_id)
        source = row[7] if row is not None and row[6] == "answered" else task_id
        done = finished.get(source)
        if done is None or not done[2]:
            return None
        result = _result(done[0], done[1], tasks.get(source))
        if source != task_id:
            fill(result, task_id=task_id)
        return result

    memo: Memo = defaultdict(deque)
    if snapshot is None:
        for task_id, (_, _, method, _, digest, _, state, _) in tasks.items():
            if state == "completed" and memoizable(method) and (result := completion(task_id)) is not None:
                memo[(method, digest)].append(result)
        return Carried(None, [], [], dict(memo))
    seq, at, blob = snapshot
    state, allocation, in_flight = pickle.loads(blob)
    requeue: list[WaitingTask] = []
    again: list[Result] = []
    for task_id, row in tasks.items():
        task_seq, topic, _, _, _, _, task_state, _ = row
        if task_id not in in_flight and (task_seq <= seq or task_state == "cancelled"):
            continue  # its result was taken before the snapshot, or the thinker withdrew it after
        if topics is not None and topic not in topics:
            continue
        carried = completion(task_id) or _waiting_task(task_id, row)
        if isinstance(carried, Result):
            again.append(carried)
        else:
            requeue.append(carried)
    return Carried(Restored(state, allocation, at), requeue, again, {})


def _inputs_of(row: tuple | None) -> tuple[bool, Any]:
    """(whether the inputs are kept in results, the unpickled inputs or None) from a task's row."""
    if row is None or row[5] is None:
        return False, None
    fields = pickle.loads(row[5])
    return fields[1], fields[6]


def _result(line: str, value: bytes | None, row: tuple | None) -> Result:
    """A finished task's result: its JSON line, with its value and inputs as they were (not as JSON wrote them)."""
    result = Result.model_validate_json(line)
    if value is not None:
        fill(result, value=pickle.loads(value))
    keep, inputs = _inputs_of(row)
    if keep and inputs is not None:
        fill(result, inputs=pickle.loads(inputs))
    return result


def _waiting_task(task_id: str, row: tuple) -> WaitingTask | Result:
    """A task to requeue as it was sent; a failed result if its inputs were too large to journal."""
    _, topic, method, priority, _, blob, _, _ = row
    topic, keep, task_info, resources, max_retries, created, inputs = pickle.loads(blob)
    result = Result(task_id=task_id, method=method, topic=topic, keep_inputs=keep, task_info=task_info,
                    resources=ResourceRequirements(**resources), max_retries=max_retries, priority=priority,
                    timestamp=Timestamps(created=created))
    if inputs is None:
        fill(result, success=False, complete=True, failure_info=FailureInformation(
            exception="Not resumed: its inputs were larger than the journal keeps (inputs_limit), so it could not be requeued"))
        return result
    if keep:
        fill(result, inputs=pickle.loads(inputs))
    return WaitingTask(task_id, method, priority, result, inputs)
