"""Hard kills of whole campaigns (SIGKILL of the launcher's process group: what the OOM killer, a lost node
or PBS after its kill delay does), then ``--resume``, and the invariants that must hold.

Each try starts a campaign as a user does (``bash run.sh`` in a pseudo-terminal), kills it hard in the
phase it names, waits until its processes are gone, resumes it (``bash run.sh --resume RUN_DIR``) and
checks:

* ``fault fired``: the kill landed in its phase (while the campaign ran, within a snapshot of the thinker
  that had not committed, or within the resume itself), and the journal says the job was killed;
* ``no process left``, ``no segment left``: as in ``faults.py``, after the kill and after the resume;
* ``results intact``: every line of results.jsonl parses, no task id twice;
* ``resume exactly once``: the resume exits 0 and every task of the budget is logged exactly once;
* ``work kept``: every result logged before the kill is still logged after the resume (nothing finished
  was thrown away), and what ran again is at most what was unfinished at the kill.

Used by ``comparisons/hard_kill_table.py`` (the table) and ``tests/faults/`` (one try each).
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fault_actions import hard_kill
from faults import ROOT, SMALL_CAMPAIGN, Run, check_leftovers, results_intact, sleep_watching, start, wait_gone

from dragon_campaign.journal.view import run_status

BUDGET_LIMIT_S = 400.0  # a whole run or resume
HARD_KILL_INVARIANTS = ("fault fired", "no process left", "no segment left", "results intact", "resume exactly once", "work kept")

USER_CAMPAIGN = '''"""A user's campaign without checkpoint_state: it resumes by memoization."""
import time

from dragon_campaign import BaseThinker, DragonQueues, DragonTaskServer, agent

TASKS = 160


def square(x: int) -> int:
    time.sleep(0.1)
    return x * x


class Squares(BaseThinker):
    @agent
    def run_all(self) -> None:
        for i in range(TASKS):
            self.queues.send_inputs(i, method="square")
        for _ in range(TASKS):
            self.queues.get_result()


def campaign(run):
    queues = DragonQueues()
    return Squares(queues), DragonTaskServer([square], queues, pools=run.pools, run_dir=run.run_dir)
'''

# A thinker that can checkpoint, whose snapshots are large enough (48 MiB) to be caught while they are written;
# it counts the snapshots it began in snapshots.count beside its run directory.
SNAPSHOT_CAMPAIGN = '''"""A user's campaign with checkpoint_state, whose snapshots take a while to write."""
import os
import threading
import time
from pathlib import Path

from dragon_campaign import BaseThinker, DragonQueues, DragonTaskServer, ResourceCounter, result_processor, task_submitter

TASKS = 160
BALLAST = os.urandom(48 * 2**20)


def square(x: int) -> int:
    time.sleep(0.1)
    return x * x


class Squares(BaseThinker):
    def __init__(self, queues, slots, count_file):
        super().__init__(queues, ResourceCounter(slots, ["square"]))
        self.rec.reallocate(None, "square", slots)
        self.submitted, self.done_ids, self.lock, self.count_file = 0, set(), threading.Lock(), count_file

    @task_submitter(task_type="square")
    def submit(self):
        with self.lock:
            if self.submitted >= TASKS:
                self.done.set()
                return
            self.submitted += 1
            index = self.submitted - 1
        self.queues.send_inputs(index, method="square")

    @result_processor
    def receive(self, result):
        self.rec.release("square", 1)
        with self.lock:
            self.done_ids.add(result.task_id)

    def checkpoint_state(self):
        with self.lock:
            state = {"submitted": self.submitted, "done": set(self.done_ids), "ballast": BALLAST}
        count = int(self.count_file.read_text() or 0) if self.count_file.exists() else 0
        self.count_file.write_text(str(count + 1))
        return state

    def restore_state(self, resumption):
        carried = {r.task_id for r in resumption.carried}
        self.done_ids = resumption.state["done"]
        self.submitted = len(self.done_ids) + len(carried - self.done_ids)
        self.rec.restore(resumption.allocation, in_use={"square": len(carried)})


def campaign(run):
    queues = DragonQueues()
    server = DragonTaskServer([square], queues, pools=run.pools, run_dir=run.run_dir)
    return Squares(queues, sum(p.workers or 1 for p in run.pools.values()), run.run_dir.path.parent / "snapshots.count"), server
'''


SNAPSHOT_KILL = "user campaign with snapshots"


@dataclass(frozen=True)
class Kind:
    """A campaign to kill: how to start it, what a complete run logs."""

    files: dict[str, str]  # written into the try's directory
    arguments: list[str]  # of run.sh, after which --run-dir RUN --progress-interval 0
    method: str  # the method of the budget's tasks
    key: Callable[[dict], object]  # what identifies a task of the budget in its line of results.jsonl
    budget: int | None  # exactly this many tasks of the method (None: at least minimum, each key once)
    minimum: int = 0


ACKLEY = """app:
  name: ackley
  pools:
    - {name: pool-1, type: cpu, workers: 2}
    - {name: pool-2, type: cpu, workers: 2, join_after: 2}
  tasks: {evaluate: [pool-1, pool-2]}
  search_space_size: 160
  sample_dimensions: 4
  runtime: 0.3
  runtime_var: 0.01
  num_guesses: 100
  retrain_after: 20
"""

WAVE = """app:
  name: wave
  num_sims: 16
  grid_size: 32
  num_steps: 8
  sim_sleep: 0.2
  kernel_sizes: [3, 5]
  sim_workers: 2
"""

KINDS: dict[str, Kind] = {
    "moldesign": Kind({"small.yaml": SMALL_CAMPAIGN}, ["--config", "{dir}/small.yaml", "--workers", "2"], "simulate",
                      lambda r: r["task_info"]["molecule"], 12),
    "ackley": Kind({"ackley.yaml": ACKLEY}, ["--config", "{dir}/ackley.yaml"], "evaluate", lambda r: r["task_info"]["index"], None, 100),
    "streaming": Kind({"streaming.yaml": "app:\n  name: streaming\n  budget: 200\n  task_sleep: 0.1\n"},
                      ["--config", "{dir}/streaming.yaml", "--workers", "2"], "rastrigin", lambda r: r["task_id"], 200),
    "wave": Kind({"wave.yaml": WAVE}, ["--config", "{dir}/wave.yaml"], "simulate_to_store", lambda r: r["task_info"]["sim_id"], 16),
    "user campaign": Kind({"squares.py": USER_CAMPAIGN}, ["{dir}/squares.py", "--workers", "2"], "square", lambda r: r["inputs"][0][0], 160),
    SNAPSHOT_KILL: Kind({"snapshots.py": SNAPSHOT_CAMPAIGN}, ["{dir}/snapshots.py", "--workers", "2"], "square",
                        lambda r: r["inputs"][0][0], 160),
}
PHASES = ("while it runs", "during the resume")
TRIES: list[tuple[str, str]] = [(campaign, phase) for campaign in KINDS if campaign != SNAPSHOT_KILL for phase in PHASES]
TRIES.append((SNAPSHOT_KILL, "while a snapshot is written"))


@dataclass
class HardKill:
    """One try: which campaign, in which phase, what happened, which invariants held."""

    campaign: str
    phase: str
    what: str
    resumed_status: int | None
    held: dict[str, bool]
    details: list[str]


def _lines(run_dir: Path, method: str) -> list[dict]:
    path = run_dir / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if f'"method":"{method}"' in line]


def _after_results(run: Run, kind: Kind, rng: random.Random, before: int = 0) -> str | None:
    """Kill at a random moment of the run's first half: once results.jsonl holds k more results than ``before``
    (k drawn from 1 to half of what is left), a few random milliseconds later; None if the run ended first.
    """
    wanted = before + rng.randint(1, max(1, ((kind.budget or kind.minimum) - before) // 2))
    deadline = time.monotonic() + BUDGET_LIMIT_S
    while (logged := len(_lines(run.run_dir, kind.method))) < wanted:
        if run.terminal.process.poll() is not None or time.monotonic() > deadline:
            return None
        sleep_watching(run, 0.05)
    time.sleep(rng.uniform(0.0, 0.2))
    if run.terminal.process.poll() is not None:
        return None
    hard_kill(run, rng)
    return f"SIGKILL of the process group with {logged} {kind.method} results logged"


def _within_a_snapshot(run: Run, rng: random.Random) -> str | None:
    """Kill a few milliseconds after the thinker's state was taken for a snapshot after the first (its counter
    moved): its 48 MiB are then being written; whether it had committed is checked afterwards.
    """
    counter = run.run_dir.parent / "snapshots.count"
    wanted = 3 + rng.randrange(3)  # the first is taken before the agents start
    deadline = time.monotonic() + BUDGET_LIMIT_S
    while time.monotonic() < deadline and run.terminal.process.poll() is None:
        if counter.exists() and int(counter.read_text() or 0) >= wanted:
            delay = rng.uniform(0.0, 0.03)
            time.sleep(delay)
            hard_kill(run, rng)
            return f"SIGKILL of the process group {delay * 1000:.0f} ms after snapshot {wanted} was taken"
        time.sleep(0.002)
    return None


def _killed(run_dir: Path, details: list[str]) -> bool:
    """Whether the journal's last job ended without closing it (killed), as the kill meant."""
    state = run_status(run_dir).state
    if state != "killed":
        details.append(f"after the kill the run is {state!r}, not killed")
    return state == "killed"


def _snapshots_committed(run_dir: Path) -> int:
    """How many snapshots were ever committed (their numbers only grow; old ones are deleted)."""
    with sqlite3.connect(f"file:{run_dir / 'journal.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT COALESCE(MAX(n), 0) FROM snapshots").fetchone()[0]


def _gone(run: Run, details: list[str]) -> dict[str, bool]:
    """Wait for the killed run's processes to go and its warden to finish removing the runtime, then check
    what is left."""
    wait_gone(run)
    run.terminal.close()
    return check_leftovers(run, details)


def try_hard_kill(campaign: str, phase: str, workdir: Path, seed: int) -> HardKill:
    """Start the campaign, kill it hard in ``phase``, resume it (twice for a kill during the resume), check."""
    kind, rng, details = KINDS[campaign], random.Random(seed), []
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in kind.files.items():
        (workdir / name).write_text(text)
    run_dir = workdir / "run"
    arguments = [argument.format(dir=workdir) for argument in kind.arguments]
    arguments += ["--snapshot-interval", "0.5" if campaign == SNAPSHOT_KILL else "2"]
    return _try(campaign, phase, kind, arguments, run_dir, workdir, rng, details)


def _try(campaign: str, phase: str, kind: Kind, arguments: list[str], run_dir: Path, workdir: Path, rng: random.Random,
         details: list[str]) -> HardKill:
    run = start(["bash", str(ROOT / "run.sh"), *arguments, "--run-dir", str(run_dir), "--progress-interval", "0"], run_dir,
                workdir / "run.log")
    fired = True
    began = 0
    if campaign == SNAPSHOT_KILL:
        what = _within_a_snapshot(run, rng)
        began = int((workdir / "snapshots.count").read_text() or 0) if (workdir / "snapshots.count").exists() else 0
    else:
        what = _after_results(run, kind, rng)
    if what is None:
        fired, what = False, "the campaign ended before the kill"
    held = _gone(run, details)
    fired &= _killed(run_dir, details)
    if campaign == SNAPSHOT_KILL and fired:
        committed = _snapshots_committed(run_dir)
        fired = committed < began  # the snapshot the kill interrupted never committed
        if not fired:
            details.append(f"{began} snapshot(s) begun, {committed} committed: the kill came after the snapshot's commit")
    kept = {str(kind.key(line)) for line in _lines(run_dir, kind.method)}
    held["results intact"] = results_intact(run_dir, details)
    status: int | None = None
    for attempt in range(2 if phase == "during the resume" else 1):
        resume = start(["bash", str(ROOT / "run.sh"), "--resume", str(run_dir), "--progress-interval", "0"], run_dir,
                       workdir / f"resume-{attempt}.log")
        if phase == "during the resume" and attempt == 0:
            logged = len(_lines(run_dir, kind.method))
            killed = _after_results(resume, kind, rng, before=logged)
            fired &= killed is not None
            what += f"; {killed or 'the resume ended before its kill'}"
            again = _gone(resume, details)
            fired &= _killed(run_dir, details)
            status = None
        else:
            status = resume.wait(BUDGET_LIMIT_S)
            resume.terminal.close()
            again = check_leftovers(resume, details)
        held["no process left"] &= again["no process left"]
        held["no segment left"] &= again["no segment left"]
        held["results intact"] &= results_intact(run_dir, details)
    held["fault fired"] = fired
    lines = _lines(run_dir, kind.method)
    keys = [str(kind.key(line)) for line in lines]
    complete = len(keys) == len(set(keys)) and (len(keys) == kind.budget if kind.budget is not None else len(keys) >= kind.minimum)
    if not complete:
        details.append(f"after the resume: {len(keys)} {kind.method} results, {len(set(keys))} distinct (budget {kind.budget or kind.minimum})")
    held["resume exactly once"] = status == 0 and complete
    if status != 0:
        details.append(f"the resume exited with {status}")
    held["work kept"] = kept <= set(keys)
    if not held["work kept"]:
        details.append(f"{len(kept - set(keys))} result(s) logged before the kill are gone")
    return HardKill(campaign, phase, what, status, held, details)
