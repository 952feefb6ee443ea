"""MPI methods: a task that runs as an MPI program (mpi4py) over several ranks, possibly across nodes.

Register ``MPIMethod(function)`` with the task server like any method. ``function`` runs on every rank
(it communicates through ``mpi4py.MPI.COMM_WORLD``); the result's value is what rank 0 returned and
``Result.mpi_ranks`` how many ranks ran it. A task asks for its ranks Colmena's way, through its
resources: ``send_inputs(..., resources={"node_count": 2, "cpu_processes": 16})`` is 16 ranks on each of
2 nodes; a task that asks for nothing gets the method's ``ranks`` on one node.

The worker that takes the task starts the ranks and waits for them, so an MPI task occupies one worker
of its pool while its ranks occupy the cores it asked for: give MPI methods a pool of their own, sized
for how many MPI tasks may run at once. Two launchers:

* ``mpiexec`` (default): ``mpiexec -n N`` on the worker's node, e.g. Hydra from the ``mpich`` wheel
  (the tests use it). One node only.
* ``dragon``: a Dragon ``ProcessGroup`` with Cray PMI, placed over ``node_count`` nodes of the runtime
  starting with the worker's own: how MPI programs run under Dragon on Polaris (cray-mpich, mpi4py built
  against it). Not exercised here: this machine has no Cray PMI.

Function, arguments and rank 0's value travel through files in ``scratch_dir`` (default: the system's
temporary directory for ``mpiexec``; the working directory, which must be on a file system every node
sees, for ``dragon``); they are removed when the task ends. A rank that raises writes its exception there
and aborts the whole program, so the task fails with that rank's exception instead of hanging.
"""

from __future__ import annotations

import os
import pickle
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cloudpickle

from dragon_campaign.sessions import run_program
from dragon_campaign.wire import PICKLE_PROTOCOL

SPEC_FILE, VALUE_FILE = "task.pkl", "value.pkl"
SHARED_MEMORY = Path("/dev/shm")
ORPHAN_CHECKS, ORPHAN_CHECK_INTERVAL_S = 50, 0.1  # how long an aborted program's ranks get to go away
STDERR_TAIL_CHARS = 2000


class MPITaskFailed(RuntimeError):
    """An MPI method's ranks failed: a rank raised, or the program died or could not start."""


@dataclass(frozen=True)
class RankLayout:
    """How many ranks on how many nodes (Colmena's ``node_count`` and ``cpu_processes`` per node)."""

    nodes: int = 1
    ranks_per_node: int = 1

    @property
    def ranks(self) -> int:
        """Ranks in all."""
        return self.nodes * self.ranks_per_node


@dataclass(frozen=True)
class MPIMethod:
    """A method whose function runs on every rank of an MPI program; its value is rank 0's.

    Args:
        function: Called with the task's arguments on every rank.
        ranks: Ranks on one node for tasks whose resources ask for no more than one process.
        launcher: ``mpiexec`` (ranks on the worker's node) or ``dragon`` (a ProcessGroup with Cray PMI).
        mpiexec: The mpiexec command, with options, e.g. ``"mpiexec -launcher fork"`` (default: the one
            beside the Python that runs the worker, as the ``mpich`` wheel installs it, else ``mpiexec``).
        scratch_dir: Where function, arguments and value are exchanged with the ranks (see module doc).
        timeout: Seconds after which the ranks are stopped and the task fails (None: no limit).
        name: The method's name (default: the function's).
    """

    function: Callable[..., Any]
    ranks: int = 2
    launcher: Literal["mpiexec", "dragon"] = "mpiexec"
    mpiexec: str | None = None
    scratch_dir: str | None = None
    timeout: float | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.ranks < 1:
            raise ValueError(f"An MPI method needs at least one rank, got {self.ranks}")
        if self.launcher not in ("mpiexec", "dragon"):
            raise ValueError(f"Unknown MPI launcher {self.launcher!r}; use 'mpiexec' or 'dragon'")

    @property
    def __name__(self) -> str:  # the task server names methods by __name__
        return self.name or self.function.__name__

    def layout(self, nodes: int, ranks_per_node: int) -> RankLayout:
        """The ranks a task gets: what its resources ask for, else ``ranks`` on one node."""
        if nodes * ranks_per_node > 1:
            return RankLayout(nodes, ranks_per_node)
        return RankLayout(1, self.ranks)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run with the default layout and return rank 0's value (outside a task server, e.g. to try it)."""
        return self.run(args, kwargs, self.layout(1, 1))[0]

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any], layout: RankLayout) -> tuple[Any, int]:
        """Start the ranks, wait for them, and return rank 0's value and the number of ranks that ran.

        Raises:
            MPITaskFailed: with the exception of the rank that raised, or the launcher's exit status and stderr.
        """
        if self.launcher == "mpiexec" and layout.nodes > 1:
            raise MPITaskFailed(f"The mpiexec launcher runs ranks on the worker's node only; {layout.nodes} nodes need launcher='dragon'")
        base = self.scratch_dir or (tempfile.gettempdir() if self.launcher == "mpiexec" else os.getcwd())
        workdir = Path(tempfile.mkdtemp(prefix="mpi-task-", dir=base))
        try:
            (workdir / SPEC_FILE).write_bytes(cloudpickle.dumps((self.function, args, kwargs), protocol=PICKLE_PROTOCOL))
            command = [sys.executable, "-m", "dragon_campaign.mpi", str(workdir)]
            if self.launcher == "mpiexec":
                stderr = self._run_mpiexec(command, layout)
            else:
                stderr = run_process_group(command, layout, self.timeout)
            return _rank_zero_value(workdir, stderr)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run_mpiexec(self, command: list[str], layout: RankLayout) -> str:
        launcher = shlex.split(self.mpiexec) if self.mpiexec else [default_mpiexec()]
        if shutil.which(launcher[0]) is None:
            raise MPITaskFailed(f"{launcher[0]!r} is not on PATH: install an MPI (e.g. pip install mpich) or set MPIMethod(mpiexec=...)")
        segments_before = shared_memory_segments()
        succeeded = False
        try:  # in a session of its own: a timeout, a cancellation or the worker's stop kills mpiexec and its ranks
            finished = run_program([*launcher, "-n", str(layout.ranks), *command], timeout=self.timeout)
            succeeded = finished.returncode == 0
        except subprocess.TimeoutExpired as exc:
            raise MPITaskFailed(f"The MPI program ran past its {self.timeout} s limit and was stopped") from exc
        finally:
            if not succeeded:
                remove_orphaned_segments(segments_before)
        return "" if succeeded else finished.stderr


def default_mpiexec() -> str:
    """The mpiexec beside the Python that runs this process (as the ``mpich`` wheel installs it), else ``mpiexec``."""
    beside_python = Path(sys.executable).parent / "mpiexec"
    return str(beside_python) if beside_python.exists() else "mpiexec"


def run_process_group(command: list[str], layout: RankLayout, timeout: float | None, cwd: str | Path | None = None) -> str:
    """Ranks as a Dragon ProcessGroup with Cray PMI, ``ranks_per_node`` on each of ``nodes`` nodes (starting
    with this one), in ``cwd`` (default: the working directory); what failed, or "" if every rank exited 0.
    """
    import socket

    from dragon.infrastructure.facts import PMIBackend
    from dragon.infrastructure.policy import Policy
    from dragon.native.machine import Node, System
    from dragon.native.process import ProcessTemplate
    from dragon.native.process_group import ProcessGroup

    hosts = sorted((Node(h).hostname for h in System().nodes), key=lambda name: name != socket.gethostname())
    if layout.nodes > len(hosts):
        raise MPITaskFailed(f"The task asks for {layout.nodes} nodes; the runtime has {len(hosts)}")
    group = ProcessGroup(restart=False, pmi=PMIBackend.CRAY)
    for host in hosts[: layout.nodes]:
        placement = Policy(placement=Policy.Placement.HOST_NAME, host_name=host)
        group.add_process(nproc=layout.ranks_per_node,
                          template=ProcessTemplate(target=command[0], args=command[1:], cwd=str(cwd or os.getcwd()), policy=placement))
    group.init()
    try:
        group.start()
        group.join(timeout)
        failed = [(puid, code) for puid, code in group.exit_status if code != 0]
        return f"ranks exited with {failed}" if failed else ""
    finally:
        group.close()


def shared_memory_segments() -> set[str]:
    """MPICH's shared-memory segments in /dev/shm now (to spot those a killed program left)."""
    return {path.name for path in SHARED_MEMORY.glob("mpich_shm_*")}


def remove_orphaned_segments(before: set[str]) -> None:
    """MPICH leaves its shared-memory segments behind when a program aborts: remove those this one created
    once no process maps them (its killed ranks may take a moment to go; another MPI task on the node may
    be using newer ones, which stay).
    """
    created = shared_memory_segments() - before
    for _ in range(ORPHAN_CHECKS):
        mapped = {name for name in created if any(name in text for text in _process_maps())}
        for name in created - mapped:
            (SHARED_MEMORY / name).unlink(missing_ok=True)
        created = mapped
        if not created:
            return
        time.sleep(ORPHAN_CHECK_INTERVAL_S)


def _process_maps() -> Iterator[str]:
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            yield maps.read_text()
        except OSError:
            continue


def _rank_zero_value(workdir: Path, launcher_stderr: str) -> tuple[Any, int]:
    """Rank 0's value and the rank count, or the failure the ranks left behind."""
    errors = sorted(workdir.glob("error-*.txt"))
    if errors:
        rank = errors[0].stem.split("-")[1]
        raised, _, rank_traceback = errors[0].read_text().partition("\n")
        failure = MPITaskFailed(f"rank {rank} raised {raised}")
        failure.add_note(f"Traceback of rank {rank}:\n{rank_traceback}")  # in the result's traceback
        raise failure
    if launcher_stderr or not (workdir / VALUE_FILE).exists():
        raise MPITaskFailed(f"The MPI program failed before rank 0 returned: {launcher_stderr[-STDERR_TAIL_CHARS:] or 'no value written'}")
    with open(workdir / VALUE_FILE, "rb") as fp:
        return pickle.load(fp)


def rank_main(workdir: Path) -> None:
    """One rank: run the function; rank 0 writes its value, a rank that raises writes why and aborts them all."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        function, args, kwargs = cloudpickle.loads((workdir / SPEC_FILE).read_bytes())
        value = function(*args, **kwargs)
        if comm.Get_rank() == 0:
            with open(workdir / f"{VALUE_FILE}.partial", "wb") as fp:
                pickle.dump((value, comm.Get_size()), fp, protocol=PICKLE_PROTOCOL)
            os.replace(workdir / f"{VALUE_FILE}.partial", workdir / VALUE_FILE)
    except BaseException as exc:
        (workdir / f"error-{comm.Get_rank()}.txt").write_text(f"{exc!r}\n{''.join(traceback.format_exception(exc))}")
        comm.Abort(1)


if __name__ == "__main__":
    rank_main(Path(sys.argv[1]))
