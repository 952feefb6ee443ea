"""Logging of a run: the console and ``<run-dir>/campaign.log``, without the libraries' internal chatter."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from dragon_campaign.runs import RunDirectory

# Libraries whose records below WARNING stay out of the console and campaign.log: Dragon's are internal,
# Parsl's go to its own logs under the run directory (it sets its loggers to DEBUG when it starts).
QUIET_LIBRARIES = ("dragon", "api_setup", "parsl")


def _not_quiet_detail(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name.split(".")[0] not in QUIET_LIBRARIES


@contextmanager
def campaign_logging(level: str, run_dir: RunDirectory) -> Iterator[None]:
    """Log to the console and to campaign.log while the campaign runs."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    previous_level = root.level
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr), logging.FileHandler(run_dir.path / "campaign.log")]
    root.setLevel(level)
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.addFilter(_not_quiet_detail)
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(previous_level)
