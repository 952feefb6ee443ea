"""The journal's writer: a process of its own beside the steering process, so that SQLite's work and the
export to results.jsonl never take the thinker's interpreter (at full dispatch speed, writing in a thread of
the steering process cost a third of its throughput).

``python -m dragon_campaign.journal.writer RUN_DIR SESSION BASE DONE`` reads frames from its stdin (an
8-byte length, then a pickle): ``("events", [(kind, fields), ...])`` (kinds: ``events.SHIPPED``, then
snapshots), written in one transaction each, or ``("close", outcome)``. It answers each frame with a JSON
line on stdout: ``{"committed": seconds}`` or ``{"failure": why}``; a batch that failed is tried again with
the next one. At the end of its input (the steering process closed it, or died) it commits what it has and
exits. An idle writer still commits a heartbeat every ``HEARTBEAT_S``.
"""

from __future__ import annotations

import json
import os
import select
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from dragon_campaign.journal.database import DONE, HEARTBEAT_S, JOURNAL_FILE, STATE, TASK_COLUMNS, connect, read_frame
from dragon_campaign.journal.events import Answered, Cancelled, Completed, Reprioritized, Submitted, input_digest

WRITER_NICE = 19  # the campaign's own processes first where cores are short (results/journal_cost.md: the window stays 0.24 s)


class Writer:
    """Writes shipped events into the journal and the results into results.jsonl."""

    def __init__(self, run_dir: Path, session: int, base: int, done: int) -> None:
        self.db = connect(run_dir / JOURNAL_FILE)
        self.results = open(run_dir / "results.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.session, self.base, self.done = session, base, done
        self.pending: list[tuple[int, tuple]] = []  # events of batches that failed: tried again first

    def write(self, events: list[tuple[int, tuple]]) -> None:
        """Commit the pending events and these in one transaction, then append their results to results.jsonl.

        Events of one task within one commit become one row: at full speed most tasks are submitted and
        finished between two commits, and cost one insert.
        """
        events = self.pending + events
        self.pending = events
        base, session, done = self.base, self.session, self.done
        new: dict[str, list[Any]] = {}
        finished: list[tuple[Any, ...]] = []
        priorities: list[tuple[float, str]] = []
        cancels: list[tuple[str]] = []
        snapshots: list[tuple[Any, ...]] = []
        lines: list[str] = []
        now = time.time()
        for kind, fields in events:
            if kind == 0:
                event = Submitted._make(fields)
                digest = event.digest if event.digest is not None else input_digest(event.inputs)  # type: ignore[arg-type]
                new[event.task_id] = [event.task_id, base + event.seq, session, event.topic, event.method, event.priority, digest,
                                      int(event.keep), event.created, event.info, event.inputs, "submitted", None, *(None,) * 8]
            elif kind == 4:
                completed = Completed._make(fields)
                done += 1
                outcome = (done, session, int(completed.success), int(completed.final), completed.reason, now, completed.line, completed.value)
                row = new.get(completed.task_id)
                if row is not None:
                    row[STATE] = "completed"
                    row[DONE:] = outcome
                else:
                    finished.append((*outcome, completed.task_id))
                lines.append(completed.line)
            elif kind == 1:
                changed = Reprioritized._make(fields)
                for task_id, priority in zip(changed.task_ids, changed.priorities, strict=True):
                    if (row := new.get(task_id)) is not None:
                        row[5] = priority
                    else:
                        priorities.append((priority, task_id))
            elif kind == 2:
                for task_id in Cancelled._make(fields).task_ids:
                    if (row := new.get(task_id)) is not None:
                        row[STATE] = "cancelled"
                    else:
                        cancels.append((task_id,))
            elif kind == 3:
                answered = Answered._make(fields)
                new[answered.task_id] = [answered.task_id, base + answered.seq, session, answered.topic, answered.method, answered.priority,
                                         answered.digest, int(answered.keep), answered.created, None, None, "answered", answered.source,
                                         *(None,) * 8]
            else:
                seq, state = fields
                snapshots.append((base + seq, session, now, state))
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(f"INSERT OR REPLACE INTO tasks VALUES ({', '.join('?' * TASK_COLUMNS)})", new.values())
            db.executemany("UPDATE tasks SET state = 'completed', done = ?, done_session = ?, success = ?, final = ?, reason = ?, at = ?, "
                           "line = ?, value = ? WHERE task_id = ?", finished)
            db.executemany("UPDATE tasks SET priority = ? WHERE task_id = ?", priorities)
            db.executemany("UPDATE tasks SET state = 'cancelled' WHERE task_id = ?", cancels)
            db.executemany("INSERT INTO snapshots (seq, session, at, state) VALUES (?, ?, ?, ?)", snapshots)
            if snapshots:  # a resume needs the latest only; one more in case
                db.execute("DELETE FROM snapshots WHERE n < (SELECT MAX(n) FROM snapshots) - 1")
            db.execute("UPDATE sessions SET heartbeat = ? WHERE session = ?", (now, session))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                db.execute("ROLLBACK")
            raise
        self.pending, self.done = [], done
        if lines:  # committed: if this fails, the next job exports them (database.export_missing)
            self.results.write("".join(line + "\n" for line in lines))
            self.results.flush()

    def heartbeat(self) -> None:
        """Say the job still runs (for ``dragon-campaign status`` on another node)."""
        self.db.execute("UPDATE sessions SET heartbeat = ? WHERE session = ?", (time.time(), self.session))

    def close(self, outcome: str | None) -> None:
        """Say how the job ended (None: its steering process died), and close."""
        if outcome is not None:
            self.db.execute("UPDATE sessions SET ended = ?, outcome = ? WHERE session = ?", (time.time(), outcome, self.session))
        self.db.close()
        self.results.close()


def main(argv: list[str]) -> int:
    """Serve frames from stdin until the end of the input or a close."""
    run_dir, session, base, done = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    os.nice(WRITER_NICE)
    writer = Writer(run_dir, session, base, done)
    stdin = sys.stdin.buffer
    outcome = None
    while True:
        if not select.select([stdin], [], [], HEARTBEAT_S)[0]:
            try:
                writer.heartbeat()
            except sqlite3.Error:
                pass  # the next batch says why
            continue
        message = read_frame(stdin)
        if message is None:
            break
        if message[0] == "close":
            outcome = message[1]
            break
        start = time.perf_counter()
        try:
            writer.write(message[1])
            reply: dict[str, Any] = {"committed": time.perf_counter() - start}
        except (sqlite3.Error, OSError) as exc:
            reply = {"failure": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
    try:
        if writer.pending:
            writer.write([])
        writer.close(outcome)
        print(json.dumps({"closed": outcome}), flush=True)
    except (sqlite3.Error, OSError) as exc:
        print(json.dumps({"failure": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
