"""Executables as methods, with Colmena 0.7's ``ExecutableMethod`` interface.

Simulation codes are usually programs, not Python functions. Subclass ``ExecutableMethod``, say which
command runs, and override ``preprocess`` (write input files into the task's
working directory, return command-line arguments and standard input) and
``postprocess`` (turn what the program wrote into the task's value); register an
instance with the task server like any function. Each task gets a fresh working directory, removed when
the task ends; the program's standard output and error go to ``colmena.stdout`` and ``colmena.stderr``
there, as in Colmena, so a ported ``postprocess`` reads the same files.

Beyond Colmena: a non-zero exit fails the task (``ExecutableFailed``, with the exit status and the tail
of standard error), ``timeout`` stops a program that runs too long, and a task that ends for any reason
(its timeout, the worker stopped at shutdown) takes the program's whole process tree with it: the program
runs in a session of its own, which is killed as a group. Colmena ignores exit statuses.

MPI programs: ``mpi=True`` (or ``MPIExecutableMethod``) puts ``mpi_command_string``, formatted with
the task's ResourceRequirements (``node_count``, ``cpu_processes``, ``cpu_threads``, ``total_ranks``),
before the command. The default is ``mpiexec -n {total_ranks}`` with the ``mpiexec`` beside the worker's
Python (MPICH's wheel); on Polaris use e.g. ``mpiexec -n {total_ranks} --ppn {cpu_processes} --depth
{cpu_threads} --cpu-bind depth`` (Cray PALS), which places ranks over the nodes of the PBS job. Or
``launcher="dragon"``: the ranks run as a Dragon ``ProcessGroup`` with Cray PMI, ``cpu_processes`` on each
of ``node_count`` nodes of the runtime (as ``MPIMethod`` does; the working
directory, under ``scratch_dir``, must then be on a file system every node sees; no standard input). That
launcher needs Cray PMI and is not exercised on the project's test machines.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from dragon_campaign.models import ResourceRequirements
from dragon_campaign.mpi import (
    STDERR_TAIL_CHARS,
    RankLayout,
    default_mpiexec,
    remove_orphaned_segments,
    run_process_group,
    shared_memory_segments,
)
from dragon_campaign.sessions import run_program

STDOUT, STDERR = "colmena.stdout", "colmena.stderr"


class ExecutableFailed(RuntimeError):
    """The program exited with a non-zero status, was killed, or ran past its timeout."""


class ExecutableMethod:
    """A program run once per task (Colmena 0.7's ``ExecutableMethod``).

    Args:
        executable: The command and its fixed arguments.
        name: The method's name (default: the command's file name).
        mpi: Launch the command with ``mpi_command_string`` (see the module documentation).
        mpi_command_string: Template of the MPI launcher, formatted with the task's resources.
        timeout: Seconds after which the program's process tree is killed and the task fails (None: no limit).
        scratch_dir: Where the per-task working directories are made (default: the system's temporary directory).
        launcher: How an MPI program starts: ``mpiexec`` (``mpi_command_string``) or ``dragon`` (a ProcessGroup).
    """

    def __init__(self, executable: Sequence[str | os.PathLike], name: str | None = None, mpi: bool = False,
                 mpi_command_string: str | None = None, timeout: float | None = None, scratch_dir: str | None = None,
                 launcher: Literal["mpiexec", "dragon"] = "mpiexec") -> None:
        if not executable:
            raise ValueError("An ExecutableMethod needs a command to run")
        if launcher not in ("mpiexec", "dragon"):
            raise ValueError(f"Unknown MPI launcher {launcher!r}; use 'mpiexec' or 'dragon'")
        self.launcher = launcher
        self.executable = [str(part) for part in executable]
        self.name = name or Path(self.executable[0]).name
        self.mpi = mpi
        self.mpi_command_string = mpi_command_string
        self.timeout = timeout
        self.scratch_dir = scratch_dir

    @property
    def __name__(self) -> str:  # the task server names methods by __name__
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({shlex.join(self.executable)!r}, name={self.name!r})"

    # -- what a subclass overrides ----------------------------------------------------------------------
    def preprocess(self, run_dir: Path, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[str], str | None]:
        """Prepare the run in ``run_dir``; return the command-line arguments and the standard input (or None).

        Default: each positional argument as a command-line argument, no standard input.
        """
        return [str(arg) for arg in args], None

    def postprocess(self, run_dir: Path) -> Any:
        """The task's value, from what the program left in ``run_dir``. Default: its standard output."""
        return (run_dir / STDOUT).read_text()

    # -- running ----------------------------------------------------------------------------------------
    def render_mpi_launch(self, resources: ResourceRequirements) -> str:
        """The MPI launcher for a task with these resources."""
        template = self.mpi_command_string or f"{shlex.quote(default_mpiexec())} -n {{total_ranks}}"
        return template.format(total_ranks=resources.total_ranks, **resources.model_dump())

    def assemble_shell_cmd(self, arguments: list[str], resources: ResourceRequirements | None) -> list[str]:
        """The full command: MPI launcher (for an MPI method), the executable, the task's arguments."""
        preamble = shlex.split(self.render_mpi_launch(resources or ResourceRequirements())) if self.mpi else []
        return [*preamble, *self.executable, *arguments]

    def execute(self, run_dir: Path, arguments: list[str], stdin: str | None,
                resources: ResourceRequirements | None = None) -> float:
        """Run the program in ``run_dir`` and return its runtime in seconds.

        Raises:
            ExecutableFailed: it exited with a non-zero status or ran past ``timeout``.
        """
        if self.mpi and self.launcher == "dragon":
            return self._execute_process_group(run_dir, arguments, stdin, resources or ResourceRequirements())
        command = self.assemble_shell_cmd(arguments, resources)
        segments_before = shared_memory_segments() if self.mpi else set()
        started = time.perf_counter()
        succeeded = False
        try:
            with open(run_dir / STDOUT, "w") as stdout, open(run_dir / STDERR, "w") as stderr:
                finished = run_program(command, timeout=self.timeout, cwd=run_dir, stdin=stdin, stdout=stdout, stderr=stderr)
            succeeded = finished.returncode == 0
        except subprocess.TimeoutExpired:
            raise ExecutableFailed(f"{shlex.join(command)} ran past its {self.timeout:g} s limit and was killed"
                                   + _stderr_tail(run_dir)) from None
        finally:
            if self.mpi and not succeeded:  # MPICH leaves its segments behind when a program is killed or aborts
                remove_orphaned_segments(segments_before)
        if finished.returncode:
            reason = (f"was killed by {signal.Signals(-finished.returncode).name}" if finished.returncode < 0
                      else f"exited with status {finished.returncode}")
            raise ExecutableFailed(f"{shlex.join(command)} {reason}" + _stderr_tail(run_dir))
        return time.perf_counter() - started

    def _execute_process_group(self, run_dir: Path, arguments: list[str], stdin: str | None,
                               resources: ResourceRequirements) -> float:
        if stdin is not None:
            raise ExecutableFailed("The dragon launcher gives MPI ranks no standard input; write an input file in preprocess")
        redirected = ["/bin/sh", "-c", f'exec "$0" "$@" >>{STDOUT} 2>>{STDERR}', *self.executable, *arguments]
        started = time.perf_counter()
        failure = run_process_group(redirected, RankLayout(resources.node_count, resources.cpu_processes), self.timeout, run_dir)
        if failure:
            raise ExecutableFailed(f"{shlex.join(self.executable + arguments)}: {failure}" + _stderr_tail(run_dir))
        return time.perf_counter() - started

    def __call__(self, *args: Any, _resources: ResourceRequirements | None = None, **kwargs: Any) -> Any:
        """Run one task: preprocess, execute, postprocess, in a fresh working directory."""
        with tempfile.TemporaryDirectory(prefix=f"{self.name}-", dir=self.scratch_dir) as directory:
            run_dir = Path(directory)
            arguments, stdin = self.preprocess(run_dir, args, kwargs)
            self.execute(run_dir, list(arguments), stdin, resources=_resources)
            return self.postprocess(run_dir)


class MPIExecutableMethod(ExecutableMethod):
    """An MPI program run over the task's ranks: ``ExecutableMethod`` with ``mpi=True``."""

    def __init__(self, executable: Sequence[str | os.PathLike], name: str | None = None, mpi_command_string: str | None = None,
                 timeout: float | None = None, scratch_dir: str | None = None,
                 launcher: Literal["mpiexec", "dragon"] = "mpiexec") -> None:
        super().__init__(executable, name, mpi=True, mpi_command_string=mpi_command_string, timeout=timeout,
                         scratch_dir=scratch_dir, launcher=launcher)


def _stderr_tail(run_dir: Path) -> str:
    try:
        tail = (run_dir / STDERR).read_text(errors="replace")[-STDERR_TAIL_CHARS:].strip()
    except OSError:
        return ""
    return f"; the end of its standard error:\n{tail}" if tail else ""
