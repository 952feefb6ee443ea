"""Task functions used by the tests (importable by the workers, like a user's module)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dragon_campaign import ExecutableMethod, MPIExecutableMethod


@dataclass(frozen=True)
class Blob:
    """A dataclass holding bytes, like ddict_store's ValueRef."""

    data: bytes


def noop(x: object = None) -> object:
    return x


def add(a: float, b: float = 0.0) -> float:
    return a + b


def sleep_then(value: object, seconds: float) -> object:
    time.sleep(seconds)
    return value


def fail(message: str) -> None:
    raise ValueError(message)


def environment(name: str) -> str | None:
    return os.environ.get(name)


def whoami() -> int:
    return os.getpid()


def die(code: int) -> None:
    """Kill the worker process itself, as a segfault or the OOM killer would."""
    if code < 0:
        os.kill(os.getpid(), -code)
    os._exit(code)


def die_on(hostname: str, linger: float = 0.0) -> str:
    """Kill the worker process if it runs on this node; elsewhere wait ``linger`` seconds (so that the next task
    submitted goes to another idle worker) and return the node's name."""
    import socket

    if socket.gethostname() == hostname:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(linger)
    return socket.gethostname()


def die_once(marker: str) -> str:
    """Kill the worker the first time (no marker file yet), succeed when re-run."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died once")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def unpicklable_value() -> object:
    return lambda: None


def describe_input(array: object, small: object) -> tuple[str, str, int]:
    """The types the worker received, and a checksum of the array (resolving it if it is a proxy)."""
    import numpy as np

    kinds = (type(array).__name__, type(small).__name__)
    return kinds[0], kinds[1], int(np.asarray(array).view(np.uint64).sum())


def make_array(megabytes: int) -> object:
    import numpy as np

    return np.full(megabytes * 2**20 // 8, 7.0)


def train(value: float, payload_bytes: int = 0) -> dict:
    """A stand-in training step: its result can be made large (``payload_bytes``) to test proxying."""
    return {"value": 2 * value, "payload": b"x" * payload_bytes}


def mpi_ranks_report(tag: str) -> dict | None:
    """An MPI method: every rank contributes its rank to an allreduce; rank 0 reports."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    total = comm.allreduce(comm.Get_rank())
    hosts = comm.gather(os.uname().nodename)
    return {"tag": tag, "size": comm.Get_size(), "rank_sum": total, "hosts": hosts} if comm.Get_rank() == 0 else None


def mpi_fail_on_rank(rank: int) -> int:
    """An MPI method whose rank ``rank`` raises while the others wait in a barrier (it must not hang)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() == rank:
        raise ValueError(f"rank {rank} cannot go on")
    comm.Barrier()
    return comm.Get_size()


def hang_ignoring_sigterm(seconds: float, marker: str) -> None:
    """A task that ignores SIGTERM (as a library that installs its own handling might): only SIGKILL ends it.
    ``marker`` is created once SIGTERM is ignored."""
    import signal
    import time
    from pathlib import Path

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(marker).touch()
    time.sleep(seconds)


def count_up(n: int):
    """A generator method: Colmena's PythonGeneratorMethod gives the list of what it yields."""
    for i in range(n):
        yield i * i


def my_resources(tag: str, _resources=None) -> tuple[str, int, int, int]:
    """Reports the ResourceRequirements the task server injected (Colmena's ``_resources``)."""
    return tag, _resources.node_count, _resources.cpu_processes, _resources.cpu_threads


class Square(ExecutableMethod):
    """Colmena's ExecutableMethod shape: the input goes in through a file, the value comes out on stdout."""

    PROGRAM = "import sys; x = float(open(sys.argv[1]).read()); print(x * x)"

    def __init__(self) -> None:
        super().__init__([sys.executable, "-c", self.PROGRAM], name="square")

    def preprocess(self, run_dir: Path, args: tuple, kwargs: dict) -> tuple[list[str], str | None]:
        (run_dir / "input.txt").write_text(str(args[0]))
        return ["input.txt"], None

    def postprocess(self, run_dir: Path) -> float:
        return float((run_dir / "colmena.stdout").read_text())


class RankReport(MPIExecutableMethod):
    """An MPI program (mpi4py, started by mpiexec over the task's ranks): rank 0 gathers every rank's rank and size
    and prints them (one writer: mpiexec may interleave the lines of several ranks mid-line).
    """

    PROGRAM = ("from mpi4py import MPI; c = MPI.COMM_WORLD; ranks = c.gather([c.Get_rank(), c.Get_size()])\n"
               "if c.Get_rank() == 0: print(ranks, flush=True)")

    def __init__(self) -> None:
        super().__init__([sys.executable, "-c", self.PROGRAM], name="rank_report")

    def postprocess(self, run_dir: Path) -> list[tuple[int, int]]:
        return sorted(tuple(pair) for pair in json.loads((run_dir / "colmena.stdout").read_text()))


def shell_program(name: str, script: str, timeout: float | None = None) -> ExecutableMethod:
    """A bash script as an executable method; its positional arguments are the task's."""
    return ExecutableMethod(["bash", "-c", script, name], name=name, timeout=timeout)


def ticks(count: int, seconds: float):
    """Yields 0, 1, ... ``count - 1`` (forever if count < 0), one every ``seconds``; returns how many."""
    produced = 0
    while count < 0 or produced < count:
        time.sleep(seconds)
        yield produced
        produced += 1
    return produced


def streaming_ticks():
    from dragon_campaign.methods import PythonGeneratorMethod

    return PythonGeneratorMethod(ticks, name="ticks", store_return_value=True, streaming=True)

def numbered_array(index: int, kilobytes: int) -> object:
    """An array of ``kilobytes`` filled with ``index``: results a consumer can check."""
    import numpy as np

    return np.full(kilobytes * 1024 // 8, float(index))
