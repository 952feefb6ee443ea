"""Work around two behaviours of dragonhpc 0.15's DDict that hurt a campaign.

**The orchestrator spins.** With dragonhpc 0.15 the orchestrator process of every DDict polls an exception queue in a loop
(``ProcessGroup._exq_monitor`` calls ``Queue.poll(timeout=0.1)``, which returns without sleeping), so an
otherwise idle orchestrator keeps one core at 100% for the DDict's whole life. The data path never goes
through the orchestrator (clients talk to the managers directly), so we lower its scheduling priority to
the minimum: it still gets any idle CPU, but simulations and trainers win every contended core. Measured
on a 2-core node, this is the difference between the campaign owning one core or two.

Only an orchestrator on this node can be found (Dragon does not expose its OS pid); elsewhere this does
nothing.

**A DDict client silences the process's logging.** The first DDict created or attached in a process sets
up Dragon's own client log and removes every handler of the root logger, so a campaign's log output
stops there. :func:`keep_root_logging` puts the handlers and level back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dragon.data.ddict.ddict import DDict

logger = logging.getLogger(__name__)

LOWEST_PRIORITY = 19


def lower_orchestrator_priority(ddict: DDict) -> int | None:
    """Renice the DDict's orchestrator if it runs on this node; returns its OS pid, or None if not found."""
    process = getattr(ddict, "_orc_proc", None)
    if process is None:  # not the creating client, or a Dragon version that starts it differently
        return None
    marker = f"DRAGON_MY_PUID={process.puid}\0".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker not in environ.read_bytes():
                continue
            pid = int(environ.parent.name)
            for thread in (environ.parent / "task").iterdir():  # Linux niceness is per thread; the spinning one is not the main thread
                os.setpriority(os.PRIO_PROCESS, int(thread.name), LOWEST_PRIORITY)
        except (OSError, ValueError):
            continue
        logger.debug(f"Lowered the priority of DDict orchestrator {process.puid} (pid {pid})")
        return pid
    return None


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
