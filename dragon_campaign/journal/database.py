"""The journal's SQLite database (``<run-dir>/journal.sqlite``) and the thread that writes it.

Events are written in group commits: every ``interval`` seconds (0.2 by default) the writer drains the
events of the queues and the server and writes them in one transaction, in WAL mode with
``synchronous=FULL`` (each commit reaches the disk before the next begins), then appends the completed
results to ``results.jsonl``. So ``results.jsonl`` never holds a result the journal lacks, and a SIGKILL,
a dead node or PBS's kill at walltime loses at most what happened since the last commit: one interval
plus the commit's own time (``results/journal_cost.md`` measures it).

A write that fails (a full disk, a quota) stops the campaign with an error that names the file; what was
committed before stays readable, and ``--resume`` carries on once there is space again.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dragon_campaign.journal.events import (
    Answered,
    Cancelled,
    Completed,
    Event,
    Reprioritized,
    Snapshot,
    Submitted,
    TaskEvents,
)
from dragon_campaign.models import Result

logger = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite"
FORMAT_VERSION = 1
COMMIT_INTERVAL_S = 0.2  # the group commit: what a SIGKILL can lose, at most (plus the commit's own time)
SNAPSHOT_S = 10.0  # how often the thinker's state is saved while it runs, by default
SNAPSHOT_ENV = "DRAGON_CAMPAIGN_SNAPSHOT_S"  # another default (dragon-campaign run --snapshot-interval sets it)
HEARTBEAT_S = 2.0  # an idle journal still commits this often, so that another node can tell the job runs
INPUTS_LIMIT = 2**20  # inputs above this many pickled bytes are not journaled: such a task cannot be requeued

_TASK_ID = re.compile(rb'^\{"task_id":"([^"]+)"')  # a line of results.jsonl begins with its task id

# One row per task: what was sent (inputs as the workers got them), its latest priority, its state, and once it
# finished its result (its line of results.jsonl, its value pickled; ``done`` numbers completions in order).
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session INTEGER PRIMARY KEY, started REAL NOT NULL, ended REAL, outcome TEXT, host TEXT, pid INTEGER,
    resumed INTEGER NOT NULL DEFAULT 0, heartbeat REAL);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, session INTEGER NOT NULL, topic TEXT NOT NULL, method TEXT NOT NULL,
    priority REAL NOT NULL, digest BLOB NOT NULL, keep INTEGER NOT NULL, created REAL NOT NULL, info BLOB, inputs BLOB,
    state TEXT NOT NULL, answered_by TEXT,
    done INTEGER, done_session INTEGER, success INTEGER, final INTEGER, reason TEXT, at REAL, line TEXT, value BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    n INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL, session INTEGER NOT NULL, at REAL NOT NULL, state BLOB NOT NULL);
"""
TASK_COLUMNS = 21
STATE, DONE = 11, 13  # positions in a row of tasks


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to a journal (``readonly``: for looking at a run, even while it runs)."""
    if readonly:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    else:
        connection = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(SCHEMA)
        connection.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (str(FORMAT_VERSION),))
    return connection


def task_info(result: Result) -> bytes | None:
    """The rest of what requeues a task, where it is not the default: task_info, resources, max_retries."""
    resources = result.resources
    shape = (resources.node_count, resources.cpu_processes, resources.cpu_threads)
    if not result.task_info and shape == (1, 1, 1) and not result.max_retries:
        return None
    return pickle.dumps((result.task_info, shape, result.max_retries), protocol=pickle.HIGHEST_PROTOCOL)


def export_missing(connection: sqlite3.Connection, results: Path) -> int:
    """Append to results.jsonl the results the journal committed but a killed job did not export (and drop a
    line cut short by the kill); returns how many were appended.
    """
    data = results.read_bytes() if results.exists() else b""
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        with open(results, "r+b") as fp:
            fp.truncate(len(data))
    exported = {match.group(1).decode() for line in data.splitlines() if (match := _TASK_ID.match(line))}
    missing = [line for task_id, line in connection.execute("SELECT task_id, line FROM tasks WHERE done IS NOT NULL ORDER BY done")
               if task_id not in exported]
    if missing:
        with open(results, "a", encoding="utf-8") as fp:
            fp.write("".join(line + "\n" for line in missing))
    return len(missing)


class Journal:
    """Writes the events of one job into the run's journal, a group commit every ``interval`` seconds."""

    def __init__(self, run_dir: Path, events: TaskEvents, interval: float = COMMIT_INTERVAL_S,
                 inputs_limit: int = INPUTS_LIMIT, on_failure: Callable[[str], None] | None = None) -> None:
        self.path = run_dir / JOURNAL_FILE
        self.results_path = run_dir / "results.jsonl"
        self.events = events
        self.interval = interval
        self.inputs_limit = inputs_limit
        self.on_failure = on_failure
        self.failure: str | None = None
        self.commits = 0
        self.longest_commit_s = 0.0
        self._snapshot: Callable[[], Snapshot | None] | None = None
        self._snapshot_every = SNAPSHOT_S
        self._next_snapshot = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one commit at a time (the writer's, or the last one at close)
        self.connection = connect(self.path)
        self.base, self._done = self.connection.execute("SELECT COALESCE(MAX(seq), 0), COALESCE(MAX(done), 0) FROM tasks").fetchone()
        self.base = max(self.base, self.connection.execute("SELECT COALESCE(MAX(seq), 0) FROM snapshots").fetchone()[0])
        resumed = self.connection.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] > 0
        if resumed and (exported := export_missing(self.connection, self.results_path)):
            logger.info(f"{exported} result(s) the earlier job committed to its journal but did not export were added to results.jsonl")
        cursor = self.connection.execute("INSERT INTO sessions (started, host, pid, resumed, heartbeat) VALUES (?, ?, ?, ?, ?)",
                                         (time.time(), socket.gethostname(), os.getpid(), int(resumed), time.time()))
        self.session: int = cursor.lastrowid or 0
        self._results = open(self.results_path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def start(self) -> Journal:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()
        return self

    def snapshot_with(self, take: Callable[[], Snapshot | None], every: float = SNAPSHOT_S) -> None:
        """Save ``take()`` (the thinker's state) every ``every`` seconds while the campaign runs."""
        self._snapshot, self._snapshot_every = take, every
        self._next_snapshot = time.monotonic() + every

    def snapshot_now(self) -> None:
        """Take and save a snapshot at the next commit."""
        self._next_snapshot = 0.0

    def close(self, outcome: str) -> None:
        """Write what is left, say how the job ended (finished, suspended, stopped, failed), close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(10.0, 20 * self.interval))
        self.commit()
        try:
            with self._lock:
                self.connection.execute("UPDATE sessions SET ended = ?, outcome = ? WHERE session = ?", (time.time(), outcome, self.session))
        except sqlite3.Error as exc:
            logger.error(f"Could not record the end of the job in {self.path}: {exc}")
        self.connection.close()
        self._results.close()

    def drop_earlier(self, carried: set[str]) -> int:
        """At a resume: unfinished tasks of earlier jobs that do not carry on will never finish (the thinker
        submits again what it needs); returns how many.
        """
        with self._lock:
            rows = self.connection.execute("SELECT task_id FROM tasks WHERE session < ? AND state = 'submitted'", (self.session,))
            dropped = [(task_id,) for (task_id,) in rows if task_id not in carried]
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.executemany("UPDATE tasks SET state = 'dropped' WHERE task_id = ?", dropped)
            self.connection.execute("COMMIT")
        return len(dropped)

    def set_outcome(self, outcome: str) -> None:
        """Say how the job ended, once the campaign knows (finished, stopped, failed)."""
        try:
            with sqlite3.connect(self.path, timeout=30.0) as db:
                db.execute("UPDATE sessions SET outcome = ? WHERE session = ?", (outcome, self.session))
        except sqlite3.Error as exc:
            logger.error(f"Could not record the end of the job in {self.path}: {exc}")

    # -- the writer -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        beat = time.monotonic()
        while not self._stop.wait(self.interval):
            if self._snapshot is not None and time.monotonic() >= self._next_snapshot:
                self._next_snapshot = time.monotonic() + self._snapshot_every
                self._take_snapshot()
            if not self.commit(heartbeat=time.monotonic() - beat > HEARTBEAT_S):
                continue
            beat = time.monotonic()

    def _take_snapshot(self) -> None:
        assert self._snapshot is not None
        try:
            snapshot = self._snapshot()
        except Exception:
            logger.exception("The thinker's state could not be taken for a snapshot; trying again later")
            return
        if snapshot is not None:
            self.events.add(snapshot)

    def commit(self, heartbeat: bool = False) -> bool:
        """Write every event recorded so far in one transaction, then export the results; False if nothing was
        written (no event and no ``heartbeat`` asked for) or it failed.
        """
        with self._lock:
            events = self.events.drain()
            if not events and not heartbeat:
                return False
            start = time.perf_counter()
            try:
                lines = self._write(events)
            except (sqlite3.Error, OSError) as exc:
                self.events.put_back(events)  # tried again at the next commit, and at close
                self._failed(exc)
                return False
            try:
                if lines:
                    self._results.write(lines)
                    self._results.flush()
            except OSError as exc:  # committed: the next job exports them (export_missing)
                self._failed(exc)
                return False
            elapsed = time.perf_counter() - start
            self.commits += 1
            self.longest_commit_s = max(self.longest_commit_s, elapsed)
            return True

    def _write(self, events: list[Event]) -> str:
        """Write the events in one transaction; returns the lines of results.jsonl they complete.

        Events of one task within one commit become one row: at full speed most tasks are submitted and
        finished between two commits, and cost one insert.
        """
        base, session, limit = self.base, self.session, self.inputs_limit
        new: dict[str, list[Any]] = {}  # rows of tasks first seen in this commit
        finished: list[tuple[Any, ...]] = []  # of tasks written by an earlier commit
        priorities: list[tuple[float, str]] = []
        cancels: list[tuple[str]] = []
        snapshots: list[tuple[Any, ...]] = []
        lines: list[str] = []
        now = time.time()
        for event in events:
            if isinstance(event, Submitted):
                result = event.result
                inputs = event.inputs if len(event.inputs) <= limit else None
                new[result.task_id] = [result.task_id, base + event.seq, session, result.topic, result.method, result.priority,
                                       event.digest, int(result.keep_inputs), result.timestamp.created, task_info(result), inputs,
                                       "submitted", None, None, None, None, None, None, None, None, None]
            elif isinstance(event, Completed):
                result = event.result
                value, whole = _pickled_value(result)
                self._done += 1
                done = (self._done, session, int(bool(result.success)), int(event.final and whole), result.failure_reason, now, event.line, value)
                row = new.get(result.task_id)
                if row is not None:
                    row[STATE] = "completed"
                    row[DONE:] = done
                else:
                    finished.append((*done, result.task_id))
                lines.append(event.line)
            elif isinstance(event, Reprioritized):
                for task_id, priority in zip(event.task_ids, event.priorities, strict=True):
                    if (row := new.get(task_id)) is not None:
                        row[5] = priority
                    else:
                        priorities.append((priority, task_id))
            elif isinstance(event, Cancelled):
                for task_id in event.task_ids:
                    if (row := new.get(task_id)) is not None:
                        row[STATE] = "cancelled"
                    else:
                        cancels.append((task_id,))
            elif isinstance(event, Answered):
                result = event.result
                new[result.task_id] = [result.task_id, base + event.seq, session, result.topic, result.method, result.priority,
                                       event.digest, int(result.keep_inputs), result.timestamp.created, None, None, "answered",
                                       event.source, None, None, None, None, None, None, None, None]
            else:
                snapshots.append((base + event.seq, session, now,
                                  pickle.dumps((event.state, event.allocation, event.in_flight), protocol=pickle.HIGHEST_PROTOCOL)))
        db = self.connection
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
        return "".join(line + "\n" for line in lines)

    def _failed(self, exc: BaseException) -> None:
        reason = f"The campaign's journal {self.path} cannot be written ({exc}): results from here on could be lost"
        if self.failure is None:
            self.failure = reason
            logger.error(f"{reason}; stopping the campaign. What was committed before stays; free some space and resume it")
            if self.on_failure is not None:
                self.on_failure(reason)


_EXACT_IN_JSON = (int, float, str, bool, type(None))


def _pickled_value(result: Result) -> tuple[bytes | None, bool]:
    """The pickled value (the rest of the result is its JSON line), and whether it can answer a later task:
    not a proxy (its data may live in a store that ends with the job), and picklable.
    """
    value = result.value
    if type(value) in _EXACT_IN_JSON:  # its line holds it as it is
        return None, True
    if is_proxy(value):
        return None, False
    try:
        return pickle.dumps(result.value, protocol=pickle.HIGHEST_PROTOCOL), True
    except Exception as exc:
        logger.warning(f"The value of task {result.task_id} cannot be journaled ({exc!r}); it runs again if the campaign resumes")
        return None, False


def is_proxy(value: Any) -> bool:
    """Whether a value is a ProxyStore proxy: its data may live in a store that ends with the job (never memoized)."""
    return type(value).__module__.startswith("proxystore.") and type(value).__name__ == "Proxy"
