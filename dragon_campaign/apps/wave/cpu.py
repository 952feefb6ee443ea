"""Where the CPU went during a phase of the workflow: seconds per group of processes, from /proc (Linux).

Every process under the runtime's launcher (``dragon``, the parent of this process) and under the
workers' parents is counted, in one of three groups: ``tasks`` (the workers that ran simulations and trainers), ``services`` (what the data
path runs beside them: the DDict's orchestrator and managers, Parsl's interchange and worker-pool manager,
Ray's raylet, GCS, dashboard and agents, and its idle workers)
and ``runtime`` (everything else: the launcher and Dragon's services, this steering process, idle pools).
On a node with cores to spare the services' time is free; on this 2-core machine it is taken from the
trainers, which is why the table shows it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

GROUPS = ("tasks", "services", "runtime")
SERVICE_COMMANDS = ("raylet", "gcs_server", "site-packages/ray/", "ray::", "interchange.py", "process_worker_pool")
TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """Parent pid and CPU seconds (user + system) of a process; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class CpuMeter:
    """CPU seconds per group between ``start()`` and ``stop()``, for processes under the launcher."""

    task_pids: set[int] = field(default_factory=set)
    service_pids: set[int] = field(default_factory=set)
    _before: dict[int, float] = field(default_factory=dict)

    def _tree(self) -> dict[int, float]:
        """CPU seconds of the launcher and its descendants, and of the workers' parents and theirs (Parsl's
        worker pools are started detached from the launcher).
        """
        stats = {int(p.name): s for p in Path("/proc").glob("[0-9]*") if (s := _stat(int(p.name))) is not None}
        inside = {os.getppid(), *self.task_pids, *(stats[pid][0] for pid in self.task_pids if pid in stats)} - {0, 1}
        while True:  # add descendants until none is left
            grown = {pid for pid, (parent, _) in stats.items() if parent in inside} - inside
            if not grown:
                return {pid: stats[pid][1] for pid in inside if pid in stats}
            inside |= grown

    def _group(self, pid: int) -> str:
        if pid in self.task_pids:
            return "tasks"
        if pid in self.service_pids or any(name in _command(pid) for name in SERVICE_COMMANDS):
            return "services"
        return "runtime"

    def start(self) -> None:
        """Take the first snapshot."""
        self._before = self._tree()

    def stop(self) -> dict[str, float]:
        """CPU seconds per group since ``start()`` (processes that exited meanwhile are not counted)."""
        spent = dict.fromkeys(GROUPS, 0.0)
        for pid, seconds in self._tree().items():
            spent[self._group(pid)] += seconds - self._before.get(pid, 0.0)
        return spent
