"""Faults injected into a small real campaign in a named phase, and the invariants that must hold after each.

Each try starts the molecular-design campaign the way a user does (``bash run.sh`` in a pseudo-terminal,
so that Ctrl-C is typed, not sent), waits for its phase (``fault_phases``), injects one fault
(``fault_actions``), waits for the run to end, carries the campaign to its end (``--resume`` where it can,
else a new run in the same directory, as a user would) and checks:

* ``fired in phase``: the phase held when the fault came, and the fault found what it acts on;
* ``bounded``: the run ended within ``BOUND_S`` of the fault;
* ``no process left``, ``no segment left``: once a command has returned, no process of its Dragon runtime
  is alive and no ``/dev/shm`` segment that appeared while it ran is left;
* ``nothing swept``: the launcher's sweeper (or its warden) had nothing to kill or remove: what it cleaned
  the runtime left behind (after a SIGKILL of the whole job the warden is the only one left to clean that
  job; its work there is reported, not counted);
* ``results intact``: every line of results.jsonl parses, no task id twice, and none of the lines seen
  while the campaign ran is gone;
* ``complete``: the campaign, finished or carried on, logged each simulation of the budget exactly once.

Used by ``comparisons/fault_injection.py`` (the table) and ``tests/faults/`` (one try of each phase).
Nothing else may run Dragon on the machine meanwhile: a segment or process is the run's if it appeared
while the run was going.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from common import outside_runtime_env  # noqa: E402
from terminal import CTRL_C, Terminal  # noqa: E402

from dragon_campaign.launch import proc_stat  # noqa: E402

SMALL_CAMPAIGN = "app:\n  budget: 12\n  retrain_every: 4\n  ensemble: 2\n  epochs: 5\n  space_limit: 1500\n  chunk_size: 500\n"
BUDGET = 12
WORKERS = 2
BOUND_S = 120.0  # a run must end this long after its fault at the latest
RUN_LIMIT_S = 400.0  # a whole run, fault or not
SHM = Path("/dev/shm")
WORKER_ENV = b"DRAGON_CAMPAIGN_WORKER="


@dataclass
class Run:
    """One command in a terminal, watched: the processes and segments that appeared while it ran."""

    terminal: Terminal
    run_dir: Path
    started: float
    shm_before: set[str]
    seen: dict[int, float] = field(default_factory=dict)  # pid -> its start time (guards against pid reuse)
    load: list[subprocess.Popen] = field(default_factory=list)  # busy loops of a fault, stopped after the run
    group: int | None = None
    results_seen: int = 0  # the most lines results.jsonl was seen to hold while the run went
    results_bytes: int = 0

    @property
    def wrapper(self) -> int:
        return self.terminal.process.pid

    def runtime_group(self) -> int | None:
        """The process group of the Dragon launcher (the wrapper's child; remembered once found)."""
        if self.group is None:
            self.group = next((pid for pid in _children(self.wrapper) if _pgid(pid) == pid), None)  # dragon leads its group
        return self.group

    def runtime_processes(self) -> list[int]:
        group = self.runtime_group()
        return [] if group is None else [pid for pid in all_pids() if _pgid(pid) == group]

    def watch(self) -> None:
        """Remember the run's processes and how many results it has logged (called often while it runs)."""
        for pid in [self.wrapper, *self.runtime_processes()]:
            if pid not in self.seen and (start := _start_time(pid)) is not None:
                self.seen[pid] = start
        path = self.run_dir / "results.jsonl"
        with contextlib.suppress(OSError):
            if path.stat().st_size > self.results_bytes:
                self.results_bytes = path.stat().st_size
                self.results_seen = max(self.results_seen, len(path.read_bytes().splitlines()))

    def alive(self) -> list[int]:
        """The run's processes still alive (a pid with the start time it had when seen)."""
        return [pid for pid, start in self.seen.items() if _start_time(pid) == start]

    def new_segments(self) -> list[str]:
        """/dev/shm entries that appeared since the run started."""
        return sorted(set(os.listdir(SHM)) - self.shm_before)

    def workers(self) -> list[int]:
        return [pid for pid in self.runtime_processes() if WORKER_ENV in _environ(pid)]

    def ddict_managers(self) -> list[int]:
        """Dragon processes that are neither workers nor the head nor the DDict's orchestrator (whose background
        threads ddict_store runs under SCHED_IDLE, or at nice 19 where that is refused)."""
        return [pid for pid in self.runtime_processes()
                if b"_dragon_native_python_process_main" in cmdline(pid) and WORKER_ENV not in _environ(pid)
                and not _lowered(pid)]

    def simulations_logged(self) -> int:
        path = self.run_dir / "results.jsonl"
        return sum('"method":"simulate"' in line for line in path.read_text().splitlines()) if path.exists() else 0

    def wait(self, limit: float) -> int | None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            self.watch()
            if (rc := self.terminal.process.poll()) is not None:
                self.terminal.wait(5)
                return rc
            time.sleep(0.2)
        return None


def start(command: list[str], run_dir: Path, log: Path) -> Run:
    env = outside_runtime_env()  # a runtime of its own
    shm_before = set(os.listdir(SHM))
    run = Run(Terminal(command, log, env=env, cwd=ROOT), run_dir, time.monotonic(), shm_before)
    run.watch()
    return run


def sleep_watching(run: Run, seconds: float) -> None:
    """Sleep, watching the run meanwhile."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        run.watch()
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))


def campaign_command(config: Path, run_dir: Path, workers: int = WORKERS) -> list[str]:
    return ["bash", str(ROOT / "run.sh"), "--config", str(config), "--run-dir", str(run_dir),
            "--workers", str(workers), "--progress-interval", "0"]


# -- one try ------------------------------------------------------------------------------------------------
GONE_S = 60.0  # after a SIGKILL of the job, its processes must be gone this long after (the warden removes them)
SWEPT = ("left behind by the runtime", "did not come down within")  # what the launcher says when it cleans up
INVARIANTS = ("fired in phase", "bounded", "no process left", "no segment left", "nothing swept", "results intact", "complete")


@dataclass
class Outcome:
    fault: str
    phase: str
    what: str
    exit_status: int | None
    finishing_statuses: list[int | None]  # of the runs that carried the campaign on (resume, or a new run)
    seconds_to_exit: float
    held: dict[str, bool]
    swept: list[str]
    details: list[str]


def try_fault(fault: str, phase_name: str, workdir: Path, seed: int) -> Outcome:
    """Run the small campaign, inject ``fault`` in ``phase_name``, carry the campaign to its end, check everything."""
    from fault_actions import FAULTS, HARD_KILL, remove_memory_group  # they build on this module
    from fault_phases import PHASES, enter

    rng, phase, details = random.Random(seed), PHASES[phase_name], []
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "small.yaml"
    config.write_text(SMALL_CAMPAIGN)
    run_dir = workdir / "run"
    command = campaign_command(config, run_dir) + phase.arguments_for(rng)
    run = start(command, run_dir, workdir / "run.log")
    fired, bounded, effect = False, True, ""
    try:
        why_not = enter(run, phase, rng)
        if why_not is None:
            what, fired, then = FAULTS[fault](run, rng)
            if fired and not phase.condition(run):  # the phase had ended by the time the fault came
                fired, what = False, f"{what} (after it, not {phase.name} any more)"
            if then is not None:
                then()
        else:
            what = f"not injected: {why_not}"
        injected = time.monotonic()
        if fault == HARD_KILL:
            status = wait_gone(run)
        else:
            status = run.wait(BOUND_S)
            bounded = status is not None
            if status is None:  # escalate as a user would: Ctrl-C until the launcher tears the runtime down
                details.append(f"still running {BOUND_S:.0f} s after the fault")
                for _ in range(4):  # the fourth kills the runtime
                    run.terminal.type(CTRL_C)
                    if (status := run.wait(RUN_LIMIT_S / 4)) is not None:
                        break
        seconds = time.monotonic() - injected
    finally:
        for process in run.load:
            process.kill()
            process.wait()
        effect = remove_memory_group()
        run.terminal.close()
    if effect:
        what = f"{what}: {effect}"
    held = {"fired in phase": fired, "bounded": bounded, **check_leftovers(run, details)}
    swept = swept_by_launcher(run.terminal.log)
    counted = [] if fault == HARD_KILL else list(swept)
    held["results intact"] = results_intact(run_dir, details, run.results_seen)
    statuses: list[int | None] = []
    finished = status == 0
    while not finished and len(statuses) < 2:  # carry the campaign on, as a user would
        again = start(carry_on_command(command, run_dir), run_dir, workdir / f"carry-on-{len(statuses)}.log")
        try:
            statuses.append(again.wait(RUN_LIMIT_S))
        finally:
            again.terminal.close()
        for invariant, ok in check_leftovers(again, details).items():
            held[invariant] &= ok
        more = swept_by_launcher(again.terminal.log)
        swept += more
        counted += more
        held["results intact"] &= results_intact(run_dir, details, again.results_seen)
        finished = statuses[-1] == 0
    held["nothing swept"] = not counted
    details += [f"swept: {line}" for line in counted]
    held["complete"] = finished and each_simulation_once(run_dir, details)
    if not finished:
        details.append(f"the campaign did not finish: exit {status}, then {statuses}")
    return Outcome(fault, phase.name, what, status, statuses, seconds, held, swept, details)


def carry_on_command(command: list[str], run_dir: Path) -> list[str]:
    """How a user carries a stopped campaign on: ``--resume`` if its run directory says it can, else the same
    command again (a run stopped during set-up has nothing to resume), without the phase's ``--stop-after``.
    """
    from dragon_campaign.journal.view import run_status

    if (run_dir / "journal.sqlite").exists() and run_status(run_dir).resumable:
        return ["bash", str(ROOT / "run.sh"), "--resume", str(run_dir), "--progress-interval", "0"]
    if "--stop-after" in command:
        at = command.index("--stop-after")
        command = command[:at] + command[at + 2:]
    return command


def wait_gone(run: Run) -> int | None:
    """After a SIGKILL of the whole job: wait for its processes to go and its warden to finish removing the runtime."""
    deadline = time.monotonic() + GONE_S
    while (run.alive() or wardens(run)) and time.monotonic() < deadline:
        run.watch()
        time.sleep(0.5)
    return run.terminal.process.poll()


def wardens(run: Run) -> list[int]:
    """The warden of the run's launcher (in a session of its own: the kill of the group spares it)."""
    wanted = [b"dragon_campaign.launch", b"--warden", str(run.wrapper).encode()]
    return [pid for pid in all_pids() if all(part in cmdline(pid).split(b"\0") for part in wanted)]


def swept_by_launcher(log: Path) -> list[str]:
    """What the launcher's sweeper or warden said it cleaned up in this run's output."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line.strip() for line in text.splitlines() if "[dragon-campaign]" in line and any(mark in line for mark in SWEPT)]


def check_leftovers(run: Run, details: list[str]) -> dict[str, bool]:
    """After the command returned: none of the run's processes alive, no segment of the run left."""
    deadline = time.monotonic() + 2.0  # processes the wrapper just killed may take a moment to go
    while True:
        alive = run.alive()
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for pid in alive:
        command = cmdline(pid).replace(b"\0", b" ")[:100].decode(errors="replace")
        details.append(f"left running: {pid} {command}")
        os.kill(pid, signal.SIGKILL)
    left = run.new_segments()
    for name in left:
        details.append(f"left in /dev/shm: {name}")
        (SHM / name).unlink(missing_ok=True)
    return {"no process left": not alive, "no segment left": not left}


def results_intact(run_dir: Path, details: list[str], seen: int = 0) -> bool:
    """Every line parses, no task id twice, and the file holds at least the ``seen`` lines it held earlier."""
    path = run_dir / "results.jsonl"
    if not path.exists():
        if seen:
            details.append(f"results.jsonl is gone; it held {seen} result(s)")
        return not seen  # stopped before any result: nothing to lose
    ids = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            ids.append(json.loads(line)["task_id"])
        except (ValueError, KeyError):
            details.append(f"results.jsonl line {number} does not parse: {line[:80]!r}")
            return False
    if len(ids) != len(set(ids)):
        details.append(f"results.jsonl: {len(ids) - len(set(ids))} duplicate task id(s)")
        return False
    if len(ids) < seen:
        details.append(f"results.jsonl holds {len(ids)} result(s); it held {seen}")
        return False
    return True


def each_simulation_once(run_dir: Path, details: list[str]) -> bool:
    simulated = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if '"method":"simulate"' in line]
    ids = {r["task_id"] for r in simulated}
    molecules = {r["task_info"]["molecule"] for r in simulated}
    if len(simulated) == len(ids) == len(molecules) == BUDGET:
        return True
    details.append(f"after resume: {len(simulated)} simulations, {len(ids)} task ids, {len(molecules)} molecules (budget {BUDGET})")
    return False


# -- /proc helpers ------------------------------------------------------------------------------------------
def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _pgid(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[2]) if fields else None


def _lowered(pid: int) -> bool:
    """Whether a thread of the process runs under SCHED_IDLE or at nice 19 (what ddict_store does to the orchestrator)."""
    for thread in Path(f"/proc/{pid}/task").glob("*"):
        fields = proc_stat(int(thread.name))  # a thread has a /proc entry of its own
        if fields is not None and (int(fields[38]) == os.SCHED_IDLE or int(fields[16]) == 19):
            return True
    return False


def _start_time(pid: int) -> float | None:
    """The process's start time, or None if it is gone (zombies count as gone: their parent reaps them)."""
    fields = proc_stat(pid)
    return None if not fields or fields[0] == "Z" else float(fields[19])


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def environ_value(pid: int, prefix: bytes) -> str:
    for entry in _environ(pid).split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix):].decode()
    return ""
