"""A status line every few seconds while a campaign runs: what waits, what runs, what finished, who is busy.

    progress: simulate 12 waiting, 2 running, 30 finished | train 0, 4, 8 | workers busy: cpu 2/2, gpu 1/1 | 1.4 results/s

``run_campaign`` logs it every ``DRAGON_CAMPAIGN_PROGRESS_S`` seconds (default 30; 0 turns it off;
``launchers/run_campaign.py --progress-interval`` sets it).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dragon_campaign.server.task_server import DragonTaskServer

logger = logging.getLogger(__name__)

PROGRESS_ENV = "DRAGON_CAMPAIGN_PROGRESS_S"
DEFAULT_INTERVAL_S = 30.0


def default_interval() -> float:
    """Seconds between status lines, from ``$DRAGON_CAMPAIGN_PROGRESS_S`` (0: none)."""
    text = os.environ.get(PROGRESS_ENV, "")
    try:
        return max(0.0, float(text)) if text else DEFAULT_INTERVAL_S
    except ValueError:
        logger.warning(f"{PROGRESS_ENV}={text!r} is not a number of seconds; using {DEFAULT_INTERVAL_S}")
        return DEFAULT_INTERVAL_S


Status = Callable[[], tuple[str, int]]  # what runs now, and how many results have arrived so far


class ProgressReporter:
    """Logs ``line`` every ``interval`` seconds from a daemon thread, between ``__enter__`` and ``__exit__``.

    ``status`` is a task server (its queues and pools) or any callable giving a text and a count of results
    (for example a workflow's Parsl futures, see ``futures_status``).
    """

    def __init__(self, status: DragonTaskServer | Status, interval: float | None = None) -> None:
        """``interval``: seconds between lines (default ``default_interval``; 0: none)."""
        self.status: Status = status if callable(status) else server_status(status)
        self.interval = default_interval() if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="campaign-progress", daemon=True)
        self._last: tuple[float, int] = (time.monotonic(), 0)

    def line(self) -> str:
        """The current status, with the result rate since the previous line."""
        text, finished = self.status()
        now = time.monotonic()
        then, finished_then = self._last
        self._last = (now, finished)
        rate = (finished - finished_then) / max(now - then, 1e-9)
        return f"progress: {text} | {rate:.1f} results/s"

    def __enter__(self) -> ProgressReporter:
        if self.interval > 0:
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                logger.info(self.line())
            except Exception:  # a status line must never stop a campaign
                logger.debug("Could not build the progress line", exc_info=True)


def server_status(server: DragonTaskServer) -> Status:
    """Tasks waiting, running and finished per topic, and busy workers per pool."""
    def status() -> tuple[str, int]:
        topics = server.queues.topic_status()
        busy = ", ".join(f"{name} {busy}/{size}" for name, (busy, size) in server.pool_status().items())
        counts = " | ".join(f"{topic} {s.waiting} waiting, {s.running} running, {s.finished} finished"
                            for topic, s in topics.items() if s.waiting or s.running or s.finished)
        return f"{counts or 'no tasks yet'} | workers busy: {busy}", sum(s.finished for s in topics.values())
    return status


def futures_status(phases: dict[str, list[Future]]) -> Status:
    """Futures finished per phase (``{"simulate": [...], "train": [...]}``), for workflows run on executors."""
    def status() -> tuple[str, int]:
        done = {name: sum(f.done() for f in futures) for name, futures in phases.items()}
        text = " | ".join(f"{name} {done[name]}/{len(futures)} finished" for name, futures in phases.items() if futures)
        return text or "no tasks yet", sum(done.values())
    return status
