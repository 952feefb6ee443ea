"""How the campaign process takes SIGINT, SIGTERM and SIGHUP: one path, whatever sent them.

A terminal's Ctrl-C, a signal to the process group, PBS's SIGTERM and ``--stop-after`` all end the same
way: the running campaign stops and checkpoints (``dragon_campaign.campaign.run_campaign`` routes
signals to itself with ``routed``), a second signal stops the workers at once. During set-up there is
nothing to checkpoint: ``install`` makes a signal raise ``Interrupted`` in the main thread, so
``with`` blocks close the store and the server on the way out. Once a campaign has ended, its outputs are
being written: a first signal is only reported, a second one interrupts.

``install`` also tells the supervisor that started the runtime (``dragon_campaign.launch``) this
process's pid, so that the signals a user sends reach the campaign and not the ``dragon`` launcher.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dragon_campaign.launch import CONTROL_ENV, EXIT_FILE, HEAD_FILE

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived while no campaign was running (set-up or wrap-up): nothing was checkpointed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_finishing = False  # a campaign has ended and its outputs are being written


def _on_stop_signal(signum: int, _frame: object) -> None:
    global _finishing
    if _finishing:
        _finishing = False
        logger.warning(f"Received {signal.Signals(signum).name}: the campaign has ended and its outputs are being written; "
                       "again to interrupt that")
        return
    raise Interrupted(signum)


def install() -> None:
    """In the campaign's main thread, before any set-up: stop signals raise ``Interrupted``, and the
    supervisor (if any) learns where to send them.
    """
    global _finishing
    _finishing = False
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_stop_signal)
    control = os.environ.get(CONTROL_ENV)
    if control:
        head = Path(control, HEAD_FILE)
        partial = head.with_suffix(".partial")
        partial.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        partial.rename(head)


def finished(status: int) -> None:
    """Tell the supervisor (if any) that the campaign process is done and with which exit status, so that
    a runtime that then fails to come down is not waited for forever.
    """
    control = os.environ.get(CONTROL_ENV)
    if control:
        ended = Path(control, EXIT_FILE)
        partial = ended.with_suffix(".partial")
        partial.write_text(json.dumps({"status": status}))
        partial.rename(ended)


@contextmanager
def routed(on_signal: Callable[[int, int], None]) -> Iterator[list[int]]:
    """While the block runs, stop signals call ``on_signal(signum, count)`` (count: 1 for the first) instead
    of raising; yields the signals received. Outside the main thread signals cannot be caught: nothing changes.
    """
    global _finishing
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        on_signal(signum, len(received))

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    _finishing = False
    try:
        yield received
    finally:
        _finishing = True
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)
