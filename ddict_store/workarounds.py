"""Work around behaviours of dragonhpc 0.15's DDict that hurt a campaign.

**The orchestrator spins.** With dragonhpc 0.15 the orchestrator process of every DDict polls an exception queue in a loop
(``ProcessGroup._exq_monitor`` calls ``Queue.poll(timeout=0.1)``, which returns without sleeping), so an
otherwise idle orchestrator keeps one core at 100% for the DDict's whole life. The data path never goes
through the orchestrator (clients talk to the managers directly), so its threads other than the main one
(which answers attaches, statistics and the destroy, and must not starve on a busy node) run under
``SCHED_IDLE``: simulations and trainers win every contended core. That still left it every idle moment of a 2-core node:
during the wave workflow's training it took 25 CPU seconds a minute, and the trainers ran 4% slower than
the file path's. So where this process may write the cgroup v1 ``cpu`` controller (root on a VM, as in
CI), the spinning thread alone (found by sampling each thread's CPU time) goes into a cgroup capped at
1% of a core (``cap_spinning_threads``); the orchestrator's main thread, which serves requests, is
untouched. Elsewhere (a user on Polaris, where one core of 32 matters less) only the priority is lowered.

Only an orchestrator on this node can be found (Dragon does not expose its OS pid); elsewhere this does
nothing.

**A DDict client silences the process's logging.** The first DDict created or attached in a process sets
up Dragon's own client log and removes every handler of the root logger, so a campaign's log output
stops there. ``keep_root_logging`` puts the handlers and level back.

**A start-up can hang.** DDict's constructor waits without a timeout for its orchestrator, and now and
then a start-up never completes: ``create_ddict`` watches each try and starts another (see there).
Also here: waiting on requests the runtime may never answer (``call_with_deadline``), and naming the
shared-memory segments a store creates so that a launcher can remove them after a crash.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dragon.data.ddict.ddict import DDict
from dragon.native.process import Process

from ddict_store.errors import StoreError

logger = logging.getLogger(__name__)

LOWEST_PRIORITY = 19


def _idle_only(thread: int) -> None:
    """Let a thread run only on otherwise idle CPUs: SCHED_IDLE (any runnable thread preempts it at once),
    or the lowest niceness where that policy is refused.
    """
    try:
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, thread, LOWEST_PRIORITY)


CPU_CGROUP = Path("/sys/fs/cgroup/cpu")  # the cgroup v1 cpu controller
SPIN_SAMPLE_S = 0.3  # a thread busy for more than half of this is spinning
SPIN_CAP = (1_000, 100_000)  # cpu.cfs_quota_us, cpu.cfs_period_us: 1% of a core
CAP_PREFIX = "dragon-campaign-"  # the caps' cgroup names (.ci/run checks that none is left)


def _thread_cpu(pid: int) -> dict[int, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for thread in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (thread / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[int(thread.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def cap_spinning_threads(pid: int, name: str) -> Path | None:
    """Put the threads of process ``pid`` that spin into a cgroup capped at 1% of a core; returns the
    cgroup (remove it with ``remove_cap``), or None where there is no spinner
    or the cpu controller cannot be written.
    """
    try:
        before = _thread_cpu(pid)
        time.sleep(SPIN_SAMPLE_S)
        after = _thread_cpu(pid)
    except OSError:
        return None
    spinners = [t for t, spent in after.items() if spent - before.get(t, spent) > SPIN_SAMPLE_S / 2]
    if not spinners or not os.access(CPU_CGROUP, os.W_OK):
        return None
    remove_stale_caps()
    cgroup = CPU_CGROUP / f"{CAP_PREFIX}{name}"
    try:
        cgroup.mkdir(exist_ok=True)
        (cgroup / "cpu.cfs_period_us").write_text(str(SPIN_CAP[1]))
        (cgroup / "cpu.cfs_quota_us").write_text(str(SPIN_CAP[0]))
        for thread in spinners:
            (cgroup / "tasks").write_text(str(thread))
    except OSError as exc:
        logger.debug(f"Could not cap the spinning threads {spinners} of pid {pid}: {exc}")
        remove_cap(cgroup)
        return None
    logger.debug(f"Capped the spinning threads {spinners} of DDict orchestrator pid {pid} at 1% of a core ({cgroup})")
    return cgroup


def remove_stale_caps() -> list[str]:
    """Remove the caps whose threads are all gone (a store whose runtime died before it was destroyed); the
    next store's creation and the campaign launcher's clean-up call this. Returns their names.
    """
    removed = []
    for cgroup in CPU_CGROUP.glob(f"{CAP_PREFIX}*"):
        try:
            if not (cgroup / "tasks").read_text().split():
                cgroup.rmdir()
                removed.append(cgroup.name)
        except OSError:
            pass  # in use again, or gone
    return removed


def remove_cap(cgroup: Path) -> None:
    """Remove a cgroup of ``cap_spinning_threads``, moving back any thread still in it."""
    try:
        for thread in (cgroup / "tasks").read_text().split():
            try:
                (CPU_CGROUP / "tasks").write_text(thread)
            except OSError:
                pass  # it exited meanwhile
        cgroup.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning(f"Could not remove the cgroup {cgroup}: {exc}")


def dragon_pids(puids: Iterable[int]) -> set[int]:
    """OS pids of these Dragon processes on this node (Dragon names each in its DRAGON_MY_PUID variable and
    exposes no other way).
    """
    markers = {f"DRAGON_MY_PUID={puid}\0".encode() for puid in puids}
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            text = environ.read_bytes()
        except OSError:
            continue
        if any(marker in text for marker in markers):
            found.add(int(environ.parent.name))
    return found


def lower_orchestrator_priority(ddict: DDict) -> int | None:
    """Lower the priority of the DDict orchestrator's background threads if it runs on this node; returns its
    OS pid, or None if not found.
    """
    process = getattr(ddict, "_orc_proc", None)
    if process is None:  # not the creating client, or a Dragon version that starts it differently
        return None
    for pid in dragon_pids([process.puid]):
        try:
            for thread in Path(f"/proc/{pid}/task").iterdir():  # Linux scheduling is per thread
                if int(thread.name) != pid:  # the main thread serves requests (attach, stats, destroy): it keeps its priority
                    _idle_only(int(thread.name))
        except (OSError, ValueError):
            continue
        logger.debug(f"Lowered the priority of DDict orchestrator {process.puid} (pid {pid})")
        return pid
    return None


def ddict_processes(ddict: DDict) -> list[int]:
    """Puids of a DDict's orchestrator and of every process it started (its managers), as seen by the
    creating client ([] elsewhere). dragonhpc 0.15 names them nowhere public; they matter because once a
    manager dies its data are gone and every operation that reaches it waits forever (its timeout never fires).
    """
    root = getattr(ddict, "_orc_proc", None)
    found: list[int] = []
    pending = [] if root is None else [root]
    while pending:
        process = pending.pop()
        found.append(process.puid)
        try:
            pending.extend(process.children())
        except Exception:
            logger.debug(f"Could not list the children of DDict process {process.puid}", exc_info=True)
    return found


def all_alive(puids: list[int]) -> bool:
    """Whether every one of these Dragon processes is still running."""
    from dragon.globalservices.process import multi_join

    try:
        exited, _ = multi_join(puids, timeout=0.1)
    except Exception:
        logger.debug("Could not poll the DDict's processes", exc_info=True)
        return False
    return not exited


@contextmanager
def keep_root_logging() -> Iterator[None]:
    """Restore the root logger's handlers and level after the block (around DDict creation or attach)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)


def call_with_deadline(function: Callable[[], None], seconds: float, name: str) -> bool:
    """Run ``function`` in a daemon thread and wait at most ``seconds``; False if it had not returned.

    A DDict operation against a manager that died waits for an answer that never comes (dragonhpc 0.15),
    and a campaign's shutdown must not wait with it. Exceptions of ``function`` are re-raised here.
    """
    failed: list[BaseException] = []

    def call() -> None:
        try:
            function()
        except BaseException as exc:  # handed to the caller
            failed.append(exc)

    thread = threading.Thread(target=call, name=name, daemon=True)
    thread.start()
    thread.join(seconds)
    if failed:
        raise failed[0]
    return not thread.is_alive()


# A runtime that dies (or is torn down by a signal) can leave its DDicts' and buffer pools' segments in
# /dev/shm. A supervisor that names a file in this variable learns the segments' name prefixes here, one a
# line, so it can remove exactly this store's leftovers and not another runtime's on the same node.
SEGMENT_REGISTRY_ENV = "DDICT_STORE_SEGMENTS"


def register_segments(*prefixes: str) -> None:
    """Append ``/dev/shm`` name prefixes of segments this process creates to ``$DDICT_STORE_SEGMENTS``, if set."""
    registry = os.environ.get(SEGMENT_REGISTRY_ENV)
    if not registry:
        return
    try:
        with open(registry, "a", encoding="utf-8") as fp:
            fp.write("".join(f"{prefix}\n" for prefix in prefixes))
    except OSError:
        logger.debug(f"Could not register segments in {registry}", exc_info=True)


def ddict_segment_prefix(name: str) -> str:
    """How dragonhpc 0.15 names a DDict's manager pools in /dev/shm (``DDD`` + the first 10 characters of its name)."""
    return f"DDD{name[:10]}_"


def pool_segment_prefix(pool_name: str) -> str:
    """How Dragon names a managed-memory pool in /dev/shm (``D`` + the pool's name)."""
    return f"D{pool_name}"


CREATE_ATTEMPTS = 2


def create_ddict(managers_per_node: int, nodes: int, total_bytes: int, timeout: float, name: str) -> DDict:
    """A new DDict; StoreError if ``CREATE_ATTEMPTS`` tries in a row are not up within ``timeout`` s each.

    DDict's constructor waits without a timeout for its orchestrator, and with dragonhpc 0.15 a start-up
    now and then never completes (twice in CI on a loaded 2-core machine, with the orchestrator running):
    such a try is logged with the stage it stopped at and abandoned (its processes go with the runtime),
    and a DDict under a fresh name is started. A try whose orchestrator exits is abandoned at once.
    """
    stages: list[str] = []
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try_name = name if attempt == 1 else f"{name}-{attempt}"
        with keep_root_logging():  # again here: an abandoned try never leaves its own keep_root_logging block
            ddict, stage = _try_create_ddict(managers_per_node, nodes, total_bytes, timeout, try_name)
        if ddict is not None:
            return ddict
        stages.append(stage)
        logger.warning(f"DDict {try_name!r} (try {attempt} of {CREATE_ATTEMPTS}) did not start: {stage}")
    raise StoreError(f"The DDict {name!r} did not start in {CREATE_ATTEMPTS} tries: {'; '.join(stages)}")


def _try_create_ddict(managers_per_node: int, nodes: int, total_bytes: int, timeout: float,
                      name: str) -> tuple[DDict | None, str]:
    """The DDict, or None and the stage its start-up stopped at."""
    ddict = DDict.__new__(DDict)  # created here so its orchestrator can be watched while __init__ waits on it
    finished = threading.Event()
    failed: list[BaseException] = []

    def create() -> None:
        try:
            with keep_root_logging():
                ddict.__init__(managers_per_node, nodes, total_bytes, timeout=timeout, name=name)
        except BaseException as exc:  # handed to the caller
            failed.append(exc)
        finally:
            finished.set()

    threading.Thread(target=create, name=f"create-ddict-{name}", daemon=True).start()
    deadline = time.monotonic() + timeout
    try:
        while not finished.wait(1.0) and time.monotonic() < deadline:
            orchestrator = _orchestrator(ddict)
            if orchestrator is not None and orchestrator.returncode is not None:
                return None, f"its orchestrator (puid {orchestrator.puid}) exited with {orchestrator.returncode}"
    except BaseException:  # interrupted (a signal during set-up): destroy the DDict once it is up, not leave it unowned
        if finished.wait(timeout) and not failed:
            call_with_deadline(ddict.destroy, timeout, f"destroy-ddict-{name}")
        raise
    if failed:
        raise failed[0]
    if finished.is_set():
        return ddict, ""
    orchestrator = _orchestrator(ddict)
    if orchestrator is None:
        return None, f"its orchestrator process was not started within {timeout:.0f} s"
    if getattr(ddict, "_orc_connector", None) is None:
        return None, f"its orchestrator (puid {orchestrator.puid}) runs but did not report within {timeout:.0f} s"
    return None, f"its orchestrator reported but its managers were not up within {timeout:.0f} s"


def _orchestrator(ddict: DDict) -> Process | None:
    """The DDict's orchestrator process once started (DDict's constructor sets the attribute before it starts it)."""
    process = getattr(ddict, "_orc_proc", None)
    return process if getattr(process, "_descr", None) is not None else None
