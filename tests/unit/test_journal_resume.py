"""What a resume takes from a journal, written by the real writer process into a real SQLite file (no
Dragon needed): a snapshot's carried tasks, memoization, and the journal's view of a killed job."""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys

from dragon_campaign.journal.database import Journal
from dragon_campaign.journal.events import Snapshot, TaskEvents, input_digest
from dragon_campaign.journal.resume import carried_from
from dragon_campaign.journal.view import run_status
from dragon_campaign.models import Result


def submit(events: TaskEvents, task_id: str, value: int, topic: str = "default", method: str = "f") -> None:
    inputs = pickle.dumps(((value,), {}))
    events.submitted(task_id, topic, method, float(value), None, True, 0.0, None, inputs)


def finish(events: TaskEvents, task_id: str, value: int, method: str = "f") -> None:
    result = Result(task_id=task_id, method=method, inputs=((value,), {}), value=value * value, success=True, complete=True)
    events.completed(task_id, True, True, None, result.json_line(), None)


def test_a_snapshot_carries_what_it_waited_for_and_what_came_after(tmp_path):
    events = TaskEvents()
    journal = Journal(tmp_path, events).start()
    for name, value in (("a", 1), ("b", 2), ("c", 3)):
        submit(events, name, value)
    finish(events, "a", 1)  # taken before the snapshot: the state has it
    events.add(Snapshot(events.last_seq, {"seen": ["a"]}, {"f": 2}, frozenset({"b", "c"})))
    finish(events, "b", 2)  # finished after the snapshot: delivered again
    submit(events, "d", 4)  # submitted after the snapshot: carried, finished
    finish(events, "d", 4)
    submit(events, "e", 5)  # submitted after, unfinished: requeued
    submit(events, "g", 6, topic="train")  # a topic the thinker redoes itself
    submit(events, "x", 7)
    events.cancelled(["x"])  # withdrawn after the snapshot: gone
    events.reprioritized(["c"], [9.0])
    journal.ship()
    journal.close("ended")

    carried = carried_from(tmp_path, session=2, from_snapshot=True, memoizable=lambda m: True, topics=("default",))
    assert carried.snapshot is not None and carried.snapshot.state == {"seen": ["a"]} and carried.snapshot.allocation == {"f": 2}
    assert sorted(r.task_id for r in carried.results) == ["b", "d"]
    assert {r.task_id: r.value for r in carried.results} == {"b": 4, "d": 16}
    assert sorted(t.task_id for t in carried.tasks) == ["c", "e"]
    c = next(t for t in carried.tasks if t.task_id == "c")
    assert c.priority == 9.0 and pickle.loads(c.inputs) == ((3,), {}) and c.result.inputs == ((3,), {})


def test_without_a_snapshot_every_finished_task_answers_one_submission(tmp_path):
    events = TaskEvents()
    journal = Journal(tmp_path, events).start()
    for name, value in (("a", 1), ("b", 1), ("c", 2)):
        submit(events, name, value)
    finish(events, "a", 1)
    finish(events, "b", 1)
    submit(events, "s", 3, method="side")
    finish(events, "s", 3, method="side")
    journal.close("ended")
    carried = carried_from(tmp_path, session=2, from_snapshot=False, memoizable=lambda m: m != "side")
    digest = input_digest(pickle.dumps(((1,), {})))
    assert carried.snapshot is None and not carried.tasks and not carried.results
    assert sorted(r.task_id for r in carried.memo[("f", digest)]) == ["a", "b"]
    assert carried.finished == 2, "the unfinished task and the method that does not memoize answer nothing"


def test_a_writer_killed_with_its_job_leaves_a_readable_journal_that_says_so(tmp_path):
    events = TaskEvents()
    journal = Journal(tmp_path, events).start()
    submit(events, "a", 1)
    finish(events, "a", 1)
    journal.ship()
    journal._writer.stdin.close()  # what the steering process's death does to the writer: the end of its input
    journal._writer.wait(30)
    head = subprocess.Popen([sys.executable, "-c", "pass"])
    head.wait()
    with sqlite3.connect(tmp_path / "journal.sqlite") as db:  # the job's head process is gone, it wrote no end
        db.execute("UPDATE sessions SET pid = ?", (head.pid,))
    status = run_status(tmp_path)
    assert status.state == "killed" and status.resumable
    assert status.topics["default"]["finished"] == 1 and status.results_exported == 1
    assert (tmp_path / "results.jsonl").read_text().count("\n") == 1
