"""Programs a task starts (an executable, ``mpiexec``): each in a session of its own, so that the task
ending for any reason (its timeout, a cancellation, the worker stopped at shutdown) takes the program's
whole process tree with it, ranks and children included, instead of leaving them running on the node.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

KILL_WAIT_S = 5.0  # how long a killed program's session gets to go away
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only makes the call
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Finished:
    """How a program ended: its exit status (negative: the signal that killed it) and what it printed
    where its output was captured.
    """

    returncode: int
    stdout: str = ""
    stderr: str = ""


def terminate_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent (the worker) exits."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_program(command: list[str], *, timeout: float | None = None, cwd: Path | None = None, stdin: str | None = None,
                stdout: int | IO[Any] = subprocess.PIPE, stderr: int | IO[Any] = subprocess.PIPE) -> Finished:
    """Run ``command`` to its end in a session of its own; whatever ends the wait kills the whole session.

    Raises:
        subprocess.TimeoutExpired: it ran past ``timeout`` (it has been killed).
    """
    process = subprocess.Popen(command, cwd=cwd, stdout=stdout, stderr=stderr, text=True,
                               stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                               start_new_session=True, preexec_fn=terminate_with_parent)
    try:
        out, err = process.communicate(stdin, timeout=timeout)
    finally:  # a timeout, an exception raised in this thread (a cancellation, the worker's stop), or done
        _kill_session(process)
    return Finished(process.returncode, out or "", err or "")


def _kill_session(process: subprocess.Popen) -> None:
    """SIGKILL every process of the program's session (its ranks, its children), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the session is gone already
    try:
        process.wait(KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        pass
