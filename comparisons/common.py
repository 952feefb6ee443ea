"""What every benchmark report states: the machine, the date and the command that produced it."""

from __future__ import annotations

import csv
import multiprocessing
import os
import platform
import resource
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def machine_description() -> str:
    """Host, CPU model, cores, memory and Python version."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")] if cpuinfo.exists() else []
    model = models[0] if models else platform.processor() or "unknown CPU"
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{socket.gethostname()}: {model}, {os.cpu_count()} cores, {memory_gb:.0f} GiB, Python {platform.python_version()}"


def provenance(launcher: str = "dragon") -> list[str]:
    """The markdown lines naming machine, date and command (run under ``launcher``)."""
    return [
        f"- Machine: {machine_description()}",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Command: `{launcher} {shlex.join(sys.argv)}`",
    ]


def commit() -> str:
    """The checked-out commit, marked when the working tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True).stdout.strip()
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)results")  # not its own tables
    return (git("rev-parse", "--short", "HEAD") or "unknown") + (" (with local changes)" if changed else "")


def require_dragon_runtime(script: str) -> None:
    """Exit with the right command unless this process was started by ``dragon``."""
    if "DRAGON_MY_PUID" not in os.environ:
        sys.exit(f"Run under the Dragon runtime: PATH=$PWD/.venv/bin:$PATH dragon comparisons/{script}")


def outside_runtime_env() -> dict[str, str]:
    """This process's environment without the Dragon runtime's variables (a child started with it is a plain
    process, or starts a runtime of its own), with this interpreter's bin folder first on PATH.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("DRAGON_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def cpu_seconds() -> float:
    """User + system CPU time of this process, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def use_dragon_processes() -> None:
    """Import this checkout's packages and start processes through Dragon."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import dragon  # noqa: F401  (registers the "dragon" start method)

    multiprocessing.set_start_method("dragon", force=True)


def two_node_hosts(script: str) -> list[str]:
    """The hostnames of this runtime's nodes, sorted; exits unless it was started over two or more nodes (by
    ``bash comparisons/two_nodes.sh comparisons/SCRIPT``). Starts processes through Dragon from then on.
    """
    require_dragon_runtime(f"{script} (through bash comparisons/two_nodes.sh comparisons/{script})")
    use_dragon_processes()
    from dragon.native.machine import Node, System

    hosts = sorted(Node(uid).hostname for uid in System().nodes)
    if len(hosts) < 2:
        sys.exit(f"{script} needs a runtime of two nodes, this one has {hosts} (bash comparisons/two_nodes.sh comparisons/{script} starts one)")
    return hosts


def memory_touch_line(megabytes: int = 512) -> str:
    """A markdown line on what first-touching memory costs here, measured now.

    On virtual machines whose host backs guest memory lazily (and takes freed memory back), writing to memory
    for the first time can cost far more than writing it again; every data path that allocates new memory
    (a store's pool, a reader's fresh arrays, the page cache) pays it, so the tables say what it was.
    """
    import numpy as np

    size = megabytes * 2**20
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        block = np.empty(size, dtype=np.uint8)
        block.fill(1)
        rates.append(size / (time.perf_counter() - start) / 1e9)
        del block
    return (f"- Memory: filling {megabytes} MB of newly allocated memory ran at {rates[0]:.2f} GB/s, and at {rates[1]:.2f} GB/s "
            "when allocated again right after freeing it (first-touch cost of this machine, measured at the start of the run).")


def write_report(output: Path, name: str, lines: list[str], draw: Callable[[Path], None] | None = None) -> Path:
    """Write ``<output>/<name>.md`` from the report's lines and, with ``draw``, the plot ``<name>.png``."""
    report = output / f"{name}.md"
    report.write_text("\n".join([*lines, ""]))
    if draw is not None:
        draw(output / f"{name}.png")
    return report


def pyplot() -> Any:
    """matplotlib's pyplot drawing to files only (compute nodes and CI have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    """The table's rows as CSV (columns: ``fields``, default the first row's keys; other keys are left out)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=fields or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


class Steps:
    """One line per finished step of a long benchmark, ``[3/12, 41 s, about 2 min left] ...``: counts,
    elapsed time and an estimate of what is left, as readable in a terminal as in a redirected log."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.started = time.monotonic()

    def done(self, text: str) -> None:
        self.count += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.count * (self.total - self.count)
        print(f"[{self.count}/{self.total}, {_duration(elapsed)}, about {_duration(left)} left] {text}", flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
