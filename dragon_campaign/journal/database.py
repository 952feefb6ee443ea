"""The journal's SQLite database (``<run-dir>/journal.sqlite``), and the steering process's side of it.

Events are written in group commits: every ``interval`` seconds (0.2 by default) the steering process ships
the events of the queues and the server to the journal's writer process (``.writer``), which writes them in
one transaction, in WAL mode with ``synchronous=FULL`` (each commit reaches the disk before the next begins),
then appends the completed results to ``results.jsonl``. So ``results.jsonl`` never holds a result the journal lacks, and a SIGKILL,
a dead node or PBS's kill at walltime loses at most what happened since the last commit: one interval
plus the commit's own time (``results/journal_cost.md`` measures it).

A write that fails (a full disk, a quota) stops the campaign with an error that names the file; what was
committed before stays readable, and ``--resume`` carries on once there is space again.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from dragon_campaign.journal.events import INPUTS_LIMIT, SHIPPED, Snapshot, TaskEvents

logger = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite"
FORMAT_VERSION = 1
COMMIT_INTERVAL_S = 0.2  # the group commit: what a SIGKILL can lose, at most (plus the commit's own time)
SNAPSHOT_S = 10.0  # how often the thinker's state is saved while it runs, by default
SNAPSHOT_ENV = "DRAGON_CAMPAIGN_SNAPSHOT_S"  # another default (dragon-campaign run --snapshot-interval sets it)
HEARTBEAT_S = 2.0  # an idle journal still commits this often, so that another node can tell the job runs
WRITER_EXIT_S = 60.0  # how long the writer gets to commit what is left once the job closes its journal
SNAPSHOT_KIND = len(SHIPPED)  # a snapshot travels as (seq, its pickle)
FRAME = struct.Struct("<Q")

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


def write_frame(stream: IO[bytes], message: Any) -> None:
    """One message for the writer process: an 8-byte length, then the pickle."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(FRAME.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next message, None at the end of the input (or a frame cut short by the sender's death)."""
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    (length,) = FRAME.unpack(header)
    payload = stream.read(length)
    return pickle.loads(payload) if len(payload) == length else None


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
    """The journal of one job, as the steering process sees it: it opens the job's row, ships the recorded
    events to its writer process every ``interval`` seconds (``.writer``), and takes the thinker's snapshots.
    """

    def __init__(self, run_dir: Path, events: TaskEvents, interval: float = COMMIT_INTERVAL_S,
                 inputs_limit: int = INPUTS_LIMIT, on_failure: Callable[[str], None] | None = None) -> None:
        self.path = run_dir / JOURNAL_FILE
        self.results_path = run_dir / "results.jsonl"
        self.events = events
        events.inputs_limit = inputs_limit
        self.interval = interval
        self.on_failure = on_failure
        self.failure: str | None = None
        self.commits = 0
        self._snapshot: Callable[[], Snapshot | None] | None = None
        self._snapshot_every = SNAPSHOT_S
        self._next_snapshot = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one shipment at a time (the shipper's, or the last one at close)
        db = connect(self.path)
        try:
            base, done = db.execute("SELECT COALESCE(MAX(seq), 0), COALESCE(MAX(done), 0) FROM tasks").fetchone()
            base = max(base, db.execute("SELECT COALESCE(MAX(seq), 0) FROM snapshots").fetchone()[0])
            resumed = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] > 0
            if resumed and (exported := export_missing(db, self.results_path)):
                logger.info(f"{exported} result(s) the earlier job committed to its journal but did not export were added to results.jsonl")
            cursor = db.execute("INSERT INTO sessions (started, host, pid, resumed, heartbeat) VALUES (?, ?, ?, ?, ?)",
                                (time.time(), socket.gethostname(), os.getpid(), int(resumed), time.time()))
            self.session: int = cursor.lastrowid or 0
        finally:
            db.close()
        # its own process group: a signal to ours (Ctrl-C) must not stop it before the campaign has written its end
        self._writer = subprocess.Popen([sys.executable, "-m", "dragon_campaign.journal.writer", str(run_dir), str(self.session),
                                         str(base), str(done)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0)
        self._replies = threading.Thread(target=self._read_replies, name="journal-replies", daemon=True)
        self._replies.start()

    def start(self) -> Journal:
        """Start shipping events."""
        self._thread = threading.Thread(target=self._run, name="journal-shipper", daemon=True)
        self._thread.start()
        return self

    def snapshot_with(self, take: Callable[[], Snapshot | None], every: float = SNAPSHOT_S) -> None:
        """Save ``take()`` (the thinker's state) every ``every`` seconds while the campaign runs."""
        self._snapshot, self._snapshot_every = take, every
        self._next_snapshot = time.monotonic() + every

    def close(self, outcome: str) -> None:
        """Ship what is left, say how the job ended (finished, suspended, stopped, failed), wait for the writer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(10.0, 20 * self.interval))
        self.ship()
        with self._lock:
            try:
                write_frame(self._writer.stdin, ("close", outcome))  # type: ignore[arg-type]
                self._writer.stdin.close()  # type: ignore[union-attr]
            except OSError as exc:
                self._failed(f"{type(exc).__name__}: {exc}")
        try:
            self._writer.wait(WRITER_EXIT_S)
        except subprocess.TimeoutExpired:
            logger.error(f"The journal's writer did not finish within {WRITER_EXIT_S:g} s; killing it")
            self._writer.kill()
            self._writer.wait()
        self._replies.join(5.0)

    def drop_earlier(self, carried: set[str]) -> int:
        """At a resume: unfinished tasks of earlier jobs that do not carry on will never finish (the thinker
        submits again what it needs); returns how many.
        """
        with sqlite3.connect(self.path, timeout=30.0) as db:
            rows = db.execute("SELECT task_id FROM tasks WHERE session < ? AND state = 'submitted'", (self.session,)).fetchall()
            dropped = [(task_id,) for (task_id,) in rows if task_id not in carried]
            db.executemany("UPDATE tasks SET state = 'dropped' WHERE task_id = ?", dropped)
        return len(dropped)

    def set_outcome(self, outcome: str) -> None:
        """Say how the job ended, once the campaign knows (finished, stopped, failed)."""
        try:
            with sqlite3.connect(self.path, timeout=30.0) as db:
                db.execute("UPDATE sessions SET outcome = ? WHERE session = ?", (outcome, self.session))
        except sqlite3.Error as exc:
            logger.error(f"Could not record the end of the job in {self.path}: {exc}")

    # -- shipping -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._snapshot is not None and time.monotonic() >= self._next_snapshot:
                self._next_snapshot = time.monotonic() + self._snapshot_every
                self._take_snapshot()
            self.ship()

    def _take_snapshot(self) -> None:
        assert self._snapshot is not None
        try:
            snapshot = self._snapshot()
        except Exception:
            logger.exception("The thinker's state could not be taken for a snapshot; trying again later")
            return
        if snapshot is not None:
            self.events.add(snapshot)

    def ship(self) -> None:
        """Send every event recorded so far to the writer, which commits them in one transaction."""
        with self._lock:
            events = self.events.drain()
            if not events or self._writer.stdin is None or self._writer.stdin.closed:
                return
            shipped = [(SNAPSHOT_KIND, (event.seq, pickle.dumps((event.state, event.allocation, event.in_flight),
                                                                 protocol=pickle.HIGHEST_PROTOCOL)))
                       if type(event) is Snapshot else event for event in events]
            try:
                write_frame(self._writer.stdin, ("events", shipped))
            except OSError as exc:  # the writer is gone
                self._failed(f"its writer process exited ({type(exc).__name__}: {exc})")

    def _read_replies(self) -> None:
        assert self._writer.stdout is not None
        for line in self._writer.stdout:
            reply = json.loads(line)
            if "failure" in reply:
                self._failed(reply["failure"])
            elif "committed" in reply:
                self.commits += 1

    def _failed(self, why: str) -> None:
        reason = f"The campaign's journal {self.path} cannot be written ({why}): results from here on could be lost"
        if self.failure is None:
            self.failure = reason
            logger.error(f"{reason}; stopping the campaign. What was committed before stays; free some space and resume it")
            if self.on_failure is not None:
                self.on_failure(reason)
