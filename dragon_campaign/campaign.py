"""Run a thinker against a task server and always shut down cleanly.

Ctrl-C (SIGINT) and SIGTERM (what PBS sends at walltime) stop the thinker's agents; then the kill signal
stops the workers, unfinished tasks are logged as failed, and the results file is complete. An agent that
raised is re-raised here as :class:`CampaignFailed` so scripts exit non-zero.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from dragon_campaign.progress import ProgressReporter, default_interval
from dragon_campaign.server.task_server import DragonTaskServer
from dragon_campaign.thinker.base import BaseThinker

logger = logging.getLogger(__name__)


class CampaignFailed(RuntimeError):
    """An agent of the thinker raised; the campaign was stopped."""


@contextmanager
def _stop_on_signals(thinker: BaseThinker) -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a request for the thinker to stop (main thread only)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        logger.warning(f"Received {signal.Signals(signum).name}: stopping the campaign")
        thinker.aborted.set()
        thinker.done.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_campaign(thinker: BaseThinker, server: DragonTaskServer, timeout: float | None = None,
                 progress_interval: float | None = None) -> None:
    """Start the server (unless already started) and the thinker, wait for the thinker, then shut the server down.

    Args:
        timeout: Stop the campaign after this many seconds (None: run until the thinker finishes).
        progress_interval: Seconds between status lines in the log (0: none; default
            ``$DRAGON_CAMPAIGN_PROGRESS_S``, else 30; see :mod:`dragon_campaign.progress`).
    Raises:
        CampaignFailed: an agent raised (its exception is chained).
        KeyboardInterrupt: the campaign was stopped by SIGINT or SIGTERM, after a clean shutdown.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = default_interval() if progress_interval is None else progress_interval
    with _stop_on_signals(thinker) as signals, ProgressReporter(server, interval):
        try:
            if not server.started:
                server.start()
            thinker.start()
            while thinker.is_alive():
                thinker.join(0.1)
                if deadline is not None and time.monotonic() > deadline and not thinker.done.is_set():
                    logger.warning(f"The campaign reached its {timeout} s limit: stopping")
                    thinker.aborted.set()
                    thinker.done.set()
        finally:
            thinker.done.set()
            server.queues.send_kill_signal()
            server.join()
            if thinker.ident is not None:
                thinker.join()
    if signals:
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signals[0]).name}")
    if thinker.exceptions:
        raise CampaignFailed(f"{len(thinker.exceptions)} agent(s) failed: {thinker.exceptions[0]!r}") from thinker.exceptions[0]
