"""How far a run got, read from its journal and its files, without starting Dragon (``dragon-campaign status``)."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dragon_campaign.journal.database import HEARTBEAT_S, JOURNAL_FILE, connect

RECENT_FAILURES = 5
HEARTBEAT_STALE_S = 10 * HEARTBEAT_S  # a job on another node whose journal has been silent this long has ended


@dataclass
class Session:
    """One job of the run."""

    session: int
    started: float
    ended: float | None
    outcome: str  # finished, suspended, stopped, failed; running; killed (ended without closing its journal)
    host: str
    pid: int
    last_commit: float | None


@dataclass
class RunStatus:
    """What ``dragon-campaign status`` says of a run directory."""

    run_dir: str
    state: str  # finished, running, checkpointed, stopped, failed, killed, no journal
    resumable: bool
    how: str  # how it resumes (or why it cannot)
    sessions: list[Session] = field(default_factory=list)
    topics: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> unfinished, finished, failed, cancelled, answered, dropped
    failures: list[dict[str, str]] = field(default_factory=list)  # the most recent
    snapshot_at: float | None = None
    results_exported: int = 0

    def to_json(self) -> str:
        """The status as JSON (``--json``)."""
        return json.dumps(asdict(self), indent=1)

    def text(self) -> str:
        """The status for people."""
        lines = [f"{self.run_dir}: {self.state}"]
        for s in self.sessions:
            span = f"{_when(s.started)} to {_when(s.ended)}" if s.ended else f"from {_when(s.started)}"
            beat = ""
            if s.outcome == "running" and s.last_commit:
                beat = f", last commit {time.time() - s.last_commit:.0f} s ago"
            elif s.outcome == "killed" and s.last_commit:
                beat = f", last commit {_when(s.last_commit)}"
            lines.append(f"  job {s.session}: {s.outcome}, {span} on {s.host} (pid {s.pid}){beat}")
        if self.topics:
            columns = ("unfinished", "finished", "failed", "cancelled", "answered", "dropped")
            lines.append(f"  {'topic':<16}" + "".join(f"{column:>11}" for column in columns))
            for topic, counts in self.topics.items():
                lines.append(f"  {topic:<16}" + "".join(f"{counts[column]:>11}" for column in columns))
            lines.append("  (answered: from the journal, not run again; dropped: unfinished when a job ended, submitted again if needed)")
        if self.snapshot_at is not None:
            lines.append(f"  the thinker's last snapshot: {_when(self.snapshot_at)}")
        for failure in self.failures:
            lines.append(f"  failed: {failure['method']} {failure['task_id']}: {failure['reason']}")
        lines.append(f"  results.jsonl: {self.results_exported} result(s)")
        lines.append(f"  {'resume' if self.resumable else 'no resume'}: {self.how}")
        return "\n".join(lines)


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "?"


def _running(host: str, pid: int, heartbeat: float | None) -> bool:
    """Whether the job still runs: its head process is alive (on this node), or (on another) its journal's
    heartbeat is recent.
    """
    if host != socket.gethostname():
        return heartbeat is not None and time.time() - heartbeat < HEARTBEAT_STALE_S
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended


def run_status(run_dir: Path, command: str = "dragon-campaign run") -> RunStatus:
    """Read the journal (and the checkpoint, results.jsonl) of ``run_dir``."""
    run_dir = Path(run_dir)
    results = run_dir / "results.jsonl"
    exported = results.read_bytes().count(b"\n") if results.exists() else 0
    checkpointed = (run_dir / "checkpoint" / "campaign.pkl").exists()
    path = run_dir / JOURNAL_FILE
    if not path.exists():
        how = f"{command} --resume {run_dir} (from its checkpoint)" if checkpointed else "nothing to resume from (no journal, no checkpoint)"
        return RunStatus(str(run_dir), "no journal", checkpointed, how, results_exported=exported)
    try:
        db = connect(path, readonly=True)
        try:
            return _read(db, run_dir, checkpointed, exported, command)
        finally:
            db.close()
    except sqlite3.Error as exc:
        return RunStatus(str(run_dir), "unreadable journal", False, f"{path}: {exc}", results_exported=exported)


def _read(db: sqlite3.Connection, run_dir: Path, checkpointed: bool, exported: int, command: str) -> RunStatus:
    sessions = []
    for session, started, ended, outcome, host, pid, heartbeat in db.execute(
            "SELECT session, started, ended, outcome, host, pid, heartbeat FROM sessions ORDER BY session"):
        if outcome is None:
            outcome = "running" if _running(host, pid, heartbeat) else "killed"
        sessions.append(Session(session, started, ended, outcome, host, pid, heartbeat))
    topics: dict[str, dict[str, Any]] = {}
    for topic, state, count in db.execute("SELECT topic, state, COUNT(*) FROM tasks GROUP BY topic, state"):
        counts = topics.setdefault(topic, dict.fromkeys(("unfinished", "finished", "failed", "cancelled", "answered", "dropped"), 0))
        counts[{"submitted": "unfinished", "completed": "finished"}.get(state, state)] += count
    for topic, failed in db.execute("SELECT topic, COUNT(*) FROM tasks WHERE state = 'completed' AND success = 0 GROUP BY topic"):
        topics[topic]["failed"] = failed
    failures = [{"task_id": task_id, "method": method, "reason": reason or "?"} for task_id, method, reason in db.execute(
        "SELECT task_id, method, reason FROM tasks WHERE success = 0 ORDER BY done DESC LIMIT ?", (RECENT_FAILURES,))]
    snapshot = db.execute("SELECT MAX(at) FROM snapshots").fetchone()[0]
    last = sessions[-1].outcome if sessions else "killed"
    unfinished = sum(counts["unfinished"] for counts in topics.values())
    resume = f"{command} --resume {run_dir}"
    if last == "finished":
        state, resumable, how = "finished", False, "the campaign finished"
    elif last == "running":
        job = sessions[-1]
        state, resumable, how = "running", False, (f"it is running now (pid {job.pid} on {job.host}); a job of another node counts "
                                                   f"as ended {HEARTBEAT_STALE_S:.0f} s after its journal's last heartbeat")
    elif last == "suspended" and checkpointed:
        state, resumable, how = "checkpointed", True, f"{resume} (exactly, from its checkpoint)"
    else:
        state = last
        source = (f"its thinker's snapshot of {_when(snapshot)} and the journal" if snapshot is not None
                  else "the journal: finished tasks answer the thinker's submissions")
        resumable, how = True, f"{resume} (from {source}; {unfinished} task(s) were unfinished)"
    return RunStatus(str(run_dir), state, resumable, how, sessions, topics, failures, snapshot, exported)
