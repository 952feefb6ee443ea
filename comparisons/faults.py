"""Fault injection into a small real campaign, and the invariants that must hold after every fault.

Each try starts the molecular-design campaign the way a user does (``bash run.sh`` in a pseudo-terminal,
so that Ctrl-C is typed, not sent), injects one fault at a random moment, waits for the run to end, and
checks:

* ``no process left``: no process of the run's Dragon runtime is alive once the command has returned;
* ``no segment left``: no ``/dev/shm`` segment that appeared during the run is still there;
* ``results intact``: every line of results.jsonl parses and no task id appears twice;
* ``resume exactly once``: where the run checkpointed, ``--resume`` finishes (under the same checks) and
  every simulation of the budget is logged exactly once (by task id and by molecule).
* ``bounded``: the run ended within ``BOUND_S`` of the fault.

Used by ``comparisons/fault_injection.py`` (the full table) and ``tests/faults/`` (one try of each fault).
Nothing else may run Dragon on the machine meanwhile: a segment or process is the run's if it appeared
while the run was going.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
OOM_HEADROOM = 8 * 2**20  # what the workers may touch once the out-of-memory fault limits them
INVARIANTS = ("bounded", "no process left", "no segment left", "results intact", "resume exactly once")


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
        return [] if group is None else [pid for pid in _all_pids() if _pgid(pid) == group]

    def watch(self) -> None:
        """Remember the run's processes (called often while it runs)."""
        for pid in [self.wrapper, *self.runtime_processes()]:
            if pid not in self.seen and (start := _start_time(pid)) is not None:
                self.seen[pid] = start

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
                if b"_dragon_native_python_process_main" in _cmdline(pid) and WORKER_ENV not in _environ(pid)
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


def campaign_command(config: Path, run_dir: Path, workers: int = WORKERS) -> list[str]:
    return ["bash", str(ROOT / "run.sh"), "--config", str(config), "--run-dir", str(run_dir),
            "--workers", str(workers), "--progress-interval", "0"]


# -- faults -------------------------------------------------------------------------------------------------
Injector = Callable[[Run, random.Random], str]


def _at_random_moment(run: Run, rng: random.Random, latest: float = 30.0) -> float:
    delay = rng.uniform(1.0, latest)
    _sleep_watching(run, delay)
    return delay


def _once_campaign_runs(run: Run, rng: random.Random, extra: float = 8.0) -> float:
    """Wait for the first simulation result (the campaign is running), then a random extra delay."""
    deadline = time.monotonic() + 200
    while run.simulations_logged() < 1 and run.terminal.process.poll() is None and time.monotonic() < deadline:
        _sleep_watching(run, 0.1)
    delay = rng.uniform(0.0, extra)
    _sleep_watching(run, delay)
    return time.monotonic() - run.started


def _sleep_watching(run: Run, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        run.watch()
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))


def ctrl_c(run: Run, rng: random.Random) -> str:
    delay = _at_random_moment(run, rng)
    run.terminal.type(CTRL_C)
    return f"Ctrl-C typed at {delay:.1f} s"


def double_ctrl_c(run: Run, rng: random.Random) -> str:
    delay = _at_random_moment(run, rng)
    run.terminal.type(CTRL_C)
    _sleep_watching(run, rng.uniform(0.2, 2.0))
    run.terminal.type(CTRL_C)
    return f"Ctrl-C typed twice from {delay:.1f} s"


def _group_signal(signum: int) -> Injector:
    def inject(run: Run, rng: random.Random) -> str:
        delay = _at_random_moment(run, rng)
        os.killpg(run.wrapper, signum)
        return f"{signal.Signals(signum).name} to the process group at {delay:.1f} s"
    return inject


def kill_worker(run: Run, rng: random.Random) -> str:
    moment = _once_campaign_runs(run, rng)
    workers = run.workers()
    if not workers:
        return f"no worker alive at {moment:.1f} s"
    victim = rng.choice(workers)
    os.kill(victim, signal.SIGKILL)
    return f"SIGKILL of worker {_environ_value(victim, WORKER_ENV)} at {moment:.1f} s"


def kill_ddict_manager(run: Run, rng: random.Random) -> str:
    moment = _once_campaign_runs(run, rng)
    managers = run.ddict_managers()
    if not managers:
        return f"no DDict manager found at {moment:.1f} s"
    os.kill(rng.choice(managers), signal.SIGKILL)
    return f"SIGKILL of a DDict manager at {moment:.1f} s"


def hung_worker(run: Run, rng: random.Random) -> str:
    """A worker that answers nothing (SIGSTOP: not even SIGTERM), then Ctrl-C: it must be killed and left behind."""
    moment = _once_campaign_runs(run, rng)
    workers = run.workers()
    if workers:
        os.kill(rng.choice(workers), signal.SIGSTOP)
    _sleep_watching(run, 1.0)
    run.terminal.type(CTRL_C)
    return f"a worker stopped (SIGSTOP) at {moment:.1f} s, then Ctrl-C"


def out_of_memory(run: Run, rng: random.Random) -> str:
    """Tasks run out of memory: every worker of the run is moved into a memory cgroup (v1) that lets them
    touch only ``OOM_HEADROOM`` more bytes (a moved process's charges stay behind, so the group counts the
    memory they touch from now on); the next tasks to allocate get the group OOM-killed. Without cgroups,
    RLIMIT_AS just above each worker's size makes its next large allocation fail instead."""
    moment = _once_campaign_runs(run, rng, extra=2.0)
    workers = run.workers()
    if not workers:
        return f"no worker alive at {moment:.1f} s"
    group = Path(f"/sys/fs/cgroup/memory/dragon-campaign-fault-{os.getpid()}")
    try:
        group.mkdir(exist_ok=True)
        (group / "memory.limit_in_bytes").write_text(str(OOM_HEADROOM))
        for pid in workers:
            (group / "cgroup.procs").write_text(str(pid))
        return f"{len(workers)} workers limited to {OOM_HEADROOM // 2**20} MiB more memory (cgroup) at {moment:.1f} s"
    except OSError:
        for pid in workers:
            size = int(Path(f"/proc/{pid}/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            subprocess.run(["prlimit", f"--pid={pid}", f"--as={size + OOM_HEADROOM}"], check=False)
        return f"{len(workers)} workers limited to their size + {OOM_HEADROOM // 2**20} MiB (RLIMIT_AS) at {moment:.1f} s"


def remove_memory_group() -> str:
    """Remove the fault's memory cgroup, if any; returns what the limit did (its OOM kills)."""
    group = Path(f"/sys/fs/cgroup/memory/dragon-campaign-fault-{os.getpid()}")
    if not group.exists():
        return ""
    try:
        control = dict(line.split() for line in (group / "memory.oom_control").read_text().splitlines())
        effect = f"{control.get('oom_kill', '?')} OOM kill(s) in the cgroup"
    except (OSError, ValueError):
        effect = ""
    for _ in range(50):
        try:
            group.rmdir()
            break
        except OSError:  # still holds a process that is exiting
            time.sleep(0.2)
    return effect


def loaded_shutdown(run: Run, rng: random.Random) -> str:
    """Every core busy (one spinning process each) when Ctrl-C comes, until the run has ended."""
    moment = _once_campaign_runs(run, rng)
    run.load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    _sleep_watching(run, 1.0)
    run.terminal.type(CTRL_C)
    return f"{len(run.load)} busy loops from {moment:.1f} s, then Ctrl-C"


FAULTS: dict[str, Injector] = {
    "Ctrl-C in the terminal": ctrl_c,
    "Ctrl-C twice in the terminal": double_ctrl_c,
    "SIGINT to the process group": _group_signal(signal.SIGINT),
    "SIGTERM to the process group": _group_signal(signal.SIGTERM),
    "SIGKILL of a worker": kill_worker,
    "SIGKILL of a DDict manager": kill_ddict_manager,
    "worker hung past the shutdown grace": hung_worker,
    "task out of memory (cgroup)": out_of_memory,
    "full CPU load during shutdown": loaded_shutdown,
}


# -- one try ------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    fault: str
    what: str
    exit_status: int | None
    resumed_status: int | None
    seconds_to_exit: float
    held: dict[str, bool]
    details: list[str]


def try_fault(name: str, workdir: Path, seed: int) -> Outcome:
    """Run the small campaign, inject fault ``name``, check every invariant (resuming where it checkpointed)."""
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "small.yaml"
    config.write_text(SMALL_CAMPAIGN)
    run_dir = workdir / "run"
    run = start(campaign_command(config, run_dir), run_dir, workdir / "run.log")
    details: list[str] = []
    try:
        what = FAULTS[name](run, rng)
        injected = time.monotonic()
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
    held = {"bounded": bounded, **check_leftovers(run, details)}
    held["results intact"] = results_intact(run_dir, details)
    resumed = None
    if (run_dir / "checkpoint" / "campaign.pkl").exists():
        resume = start(["bash", str(ROOT / "run.sh"), "--resume", str(run_dir), "--progress-interval", "0"], run_dir, workdir / "resume.log")
        try:
            resumed = resume.wait(RUN_LIMIT_S)
        finally:
            resume.terminal.close()
        resume_held = check_leftovers(resume, details)
        held["no process left"] &= resume_held["no process left"]
        held["no segment left"] &= resume_held["no segment left"]
        held["results intact"] &= results_intact(run_dir, details)
        held["resume exactly once"] = resumed == 0 and each_simulation_once(run_dir, details)
        if resumed != 0:
            details.append(f"resume exited with {resumed}")
    return Outcome(name, what, status, resumed, seconds, held, details)


def check_leftovers(run: Run, details: list[str]) -> dict[str, bool]:
    """After the command returned: none of the run's processes alive, no segment of the run left."""
    deadline = time.monotonic() + 2.0  # processes the wrapper just killed may take a moment to go
    while True:
        alive = run.alive()
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for pid in alive:
        command = _cmdline(pid).replace(b"\0", b" ")[:100].decode(errors="replace")
        details.append(f"left running: {pid} {command}")
        os.kill(pid, signal.SIGKILL)
    left = run.new_segments()
    for name in left:
        details.append(f"left in /dev/shm: {name}")
        (SHM / name).unlink(missing_ok=True)
    return {"no process left": not alive, "no segment left": not left}


def results_intact(run_dir: Path, details: list[str]) -> bool:
    path = run_dir / "results.jsonl"
    if not path.exists():
        return True  # stopped before any result: nothing to lose
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
def _all_pids() -> list[int]:
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


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _environ_value(pid: int, prefix: bytes) -> str:
    for entry in _environ(pid).split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix):].decode()
    return ""
