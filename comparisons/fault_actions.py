"""The faults: what is done to a running campaign at the moment its phase comes (``fault_phases``).

Each returns what it did and whether it found what it acts on (a worker, a DDict manager): a fault that
found nothing did not fire, and its try fails. ``APPLIES`` says in which phases each fault is tried.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from faults import WORKER_ENV, Run, environ_value, sleep_watching
from terminal import CTRL_C

OOM_HEADROOM = 8 * 2**20  # what the workers may touch once the out-of-memory fault limits them


class Injected(NamedTuple):
    """What a fault did at its moment, whether it found what it acts on, and what it does next (after the
    try has checked that the moment was in its phase)."""

    what: str
    fired: bool
    then: Callable[[], None] | None = None


Fault = Callable[[Run, random.Random], Injected]


def ctrl_c(run: Run, rng: random.Random) -> Injected:
    run.terminal.type(CTRL_C)
    return Injected("Ctrl-C typed", True)


def _ctrl_c_after(run: Run, pause: float) -> Callable[[], None]:
    def then() -> None:
        sleep_watching(run, pause)
        run.terminal.type(CTRL_C)
    return then


def double_ctrl_c(run: Run, rng: random.Random) -> Injected:
    run.terminal.type(CTRL_C)
    pause = rng.uniform(0.2, 2.0)
    return Injected(f"Ctrl-C typed twice, {pause:.1f} s apart", True, _ctrl_c_after(run, pause))


def _group_signal(signum: int) -> Fault:
    def inject(run: Run, rng: random.Random) -> Injected:
        os.killpg(run.wrapper, signum)
        return Injected(f"{signal.Signals(signum).name} to the process group", True)
    return inject


def kill_worker(run: Run, rng: random.Random) -> Injected:
    workers = run.workers()
    if not workers:
        return Injected("no worker alive", False)
    victim = rng.choice(workers)
    os.kill(victim, signal.SIGKILL)
    return Injected(f"SIGKILL of worker {environ_value(victim, WORKER_ENV)}", True)


def kill_ddict_manager(run: Run, rng: random.Random) -> Injected:
    managers = run.ddict_managers()
    if not managers:
        return Injected("no DDict manager found", False)
    os.kill(rng.choice(managers), signal.SIGKILL)
    return Injected("SIGKILL of a DDict manager", True)


def hung_worker(run: Run, rng: random.Random) -> Injected:
    """A worker that answers nothing (SIGSTOP: not even SIGTERM), then Ctrl-C: it must be killed, not left behind."""
    workers = run.workers()
    if not workers:
        return Injected("no worker alive to stop", False)
    os.kill(rng.choice(workers), signal.SIGSTOP)
    return Injected("a worker stopped (SIGSTOP), then Ctrl-C", True, _ctrl_c_after(run, 1.0))


def out_of_memory(run: Run, rng: random.Random) -> Injected:
    """Tasks run out of memory: every worker of the run is moved into a memory cgroup (v1) that lets them
    touch only ``OOM_HEADROOM`` more bytes (a moved process's charges stay behind, so the group counts the
    memory they touch from now on); the next tasks to allocate get the group OOM-killed. Without cgroups,
    RLIMIT_AS just above each worker's size makes its next large allocation fail instead."""
    workers = run.workers()
    if not workers:
        return Injected("no worker alive", False)
    group = _memory_group()
    try:
        group.mkdir(exist_ok=True)
        (group / "memory.limit_in_bytes").write_text(str(OOM_HEADROOM))
        for pid in workers:
            (group / "cgroup.procs").write_text(str(pid))
        return Injected(f"{len(workers)} workers limited to {OOM_HEADROOM // 2**20} MiB more memory (cgroup)", True)
    except OSError:
        for pid in workers:
            size = int(Path(f"/proc/{pid}/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            subprocess.run(["prlimit", f"--pid={pid}", f"--as={size + OOM_HEADROOM}"], check=False)
        return Injected(f"{len(workers)} workers limited to their size + {OOM_HEADROOM // 2**20} MiB (RLIMIT_AS)", True)


def _memory_group() -> Path:
    return Path(f"/sys/fs/cgroup/memory/dragon-campaign-fault-{os.getpid()}")


def remove_memory_group() -> str:
    """Remove the fault's memory cgroup, if any; returns what the limit did (its OOM kills)."""
    group = _memory_group()
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


def loaded_ctrl_c(run: Run, rng: random.Random) -> Injected:
    """Every core busy (one spinning process each) from now until the run has ended, and Ctrl-C after 1 s."""
    run.load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    return Injected(f"{len(run.load)} busy loops, then Ctrl-C", True, _ctrl_c_after(run, 1.0))


def hard_kill(run: Run, rng: random.Random) -> Injected:
    """SIGKILL of the Dragon launcher's process group, then of the command's: nothing of the job reacts."""
    group = run.runtime_group()
    if group is not None:
        os.killpg(group, signal.SIGKILL)
    os.killpg(run.wrapper, signal.SIGKILL)
    return Injected("SIGKILL of the process group", True)


HARD_KILL = "SIGKILL of the whole job"
FAULTS: dict[str, Fault] = {
    "Ctrl-C in the terminal": ctrl_c,
    "Ctrl-C twice in the terminal": double_ctrl_c,
    "SIGINT to the process group": _group_signal(signal.SIGINT),
    "SIGTERM to the process group": _group_signal(signal.SIGTERM),
    "SIGKILL of a worker": kill_worker,
    "SIGKILL of a DDict manager": kill_ddict_manager,
    "worker hung past the shutdown grace": hung_worker,
    "task out of memory (cgroup)": out_of_memory,
    "full CPU load, then Ctrl-C": loaded_ctrl_c,
    HARD_KILL: hard_kill,
}

EVERY_PHASE = ("set-up", "after the first result", "during training", "during a checkpoint write", "during shutdown")
WHILE_WORKING = ("after the first result", "during training")
APPLIES: dict[str, tuple[str, ...]] = {
    "Ctrl-C in the terminal": EVERY_PHASE,
    "Ctrl-C twice in the terminal": EVERY_PHASE,
    "SIGINT to the process group": EVERY_PHASE,
    "SIGTERM to the process group": EVERY_PHASE,
    "SIGKILL of a worker": (*WHILE_WORKING, "during a checkpoint write"),  # the workers go once the budget is done
    "SIGKILL of a DDict manager": EVERY_PHASE[1:],  # the store lives until the job ends
    "worker hung past the shutdown grace": (*WHILE_WORKING, "during a checkpoint write"),
    "task out of memory (cgroup)": WHILE_WORKING,  # tasks allocate only while they run
    "full CPU load, then Ctrl-C": WHILE_WORKING,
    HARD_KILL: EVERY_PHASE,
}
CELLS: list[tuple[str, str]] = [(fault, phase) for fault, phases in APPLIES.items() for phase in phases]
