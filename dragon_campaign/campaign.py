"""Run a thinker against a task server and always shut down cleanly.

Ctrl-C (SIGINT), SIGTERM (what PBS sends at walltime) and SIGHUP stop the thinker's agents; then the kill
signal stops the workers, unfinished tasks are logged as failed, and the results file is complete. A second
signal stops the workers at once instead of letting them finish their tasks (see
``dragon_campaign.interrupts``). Every wait of the shutdown has a deadline: agents that never return
are abandoned (they are daemon threads) with an error in the log. An agent that raised is re-raised here
as ``CampaignFailed`` so scripts exit non-zero.

Given a ``Checkpointer``, a signal or the time limit checkpoints the
campaign instead: unfinished tasks are set aside rather than failed, the thinker's state, the resource
allocation and the store go to ``<run-dir>/checkpoint/``, and ``CampaignSuspended`` is raised. Passing
the loaded checkpoint as ``resume_from`` in the next job carries on where it stopped.

Whatever ends a job, SIGKILL included, ``resume=True`` carries on from the run's journal
(``dragon_campaign.journal``): a thinker that implements ``checkpoint_state`` from its latest snapshot
(taken every ``snapshot_interval`` seconds while it runs), any other by memoization.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from dragon_campaign import foreground
from dragon_campaign.checkpoint import Checkpointer, SavedCampaign
from dragon_campaign.interrupts import routed
from dragon_campaign.journal.database import SNAPSHOT_ENV, SNAPSHOT_S
from dragon_campaign.journal.events import Snapshot
from dragon_campaign.journal.resume import carried_from
from dragon_campaign.progress import ProgressReporter
from dragon_campaign.runs import RunDirectory
from dragon_campaign.server.task_server import DragonTaskServer
from dragon_campaign.thinker.base import BaseThinker, Resumption

logger = logging.getLogger(__name__)

# How long agents get to return once the task server has stopped (they see the kill signal, or their
# results come back failed or set aside); after that they are left behind as daemon threads.
AGENT_EXIT_S = 30.0


class CampaignFailed(RuntimeError):
    """An agent of the thinker raised; the campaign was stopped."""


class CampaignSuspended(RuntimeError):
    """The campaign stopped with a checkpoint (signal or time limit); resume it from ``path`` in the next job."""

    def __init__(self, reason: str, path: str) -> None:
        super().__init__(f"checkpointed ({reason}) to {path}")
        self.reason = reason
        self.path = path


Entered = TypeVar("Entered")


@dataclass
class RunContext:
    """What ``dragon-campaign run`` hands a campaign function: build the thinker and the task server from it.

    Attributes:
        config: The ``app:`` section of the configuration (and ``--set app.KEY=VALUE``), validated against
            the ``Config`` model of the campaign's module (an empty model if it has none).
        pools: The pools to serve with: the configuration's, ``--workers``, else the module's
            ``default_pools(config)``, else one CPU pool with a worker per core.
        run_dir: The run directory: give it to the task server (``run_dir=run.run_dir``) so that results,
            the report and checkpoints land together.
    """

    config: Any
    pools: Mapping[str, Any]
    run_dir: RunDirectory
    _closing: ExitStack = field(default_factory=ExitStack, repr=False)

    def closing(self, resource: AbstractContextManager[Entered]) -> Entered:
        """Enter ``resource`` (a store, an executor) now and leave it after the campaign, whatever its end."""
        return self._closing.enter_context(resource)


class Campaign(NamedTuple):
    """What a campaign function returns (a plain ``(thinker, server)`` tuple does too).

    Attributes:
        thinker: The steering program; it can be checkpointed if it implements ``checkpoint_state``.
        server: The task server, started or not, with ``run_dir=run.run_dir``.
        summary: Called once the campaign has finished; what it returns joins ``summary.json``.
    """

    thinker: BaseThinker
    server: DragonTaskServer
    summary: Callable[[], dict[str, Any]] | None = None


def run_campaign(thinker: BaseThinker, server: DragonTaskServer, timeout: float | None = None,
                 progress_interval: float | None = None, checkpointer: Checkpointer | None = None,
                 resume_from: SavedCampaign | None = None, resume: bool = False, snapshot_interval: float | None = None) -> None:
    """Start the server (unless already started) and the thinker, wait for the thinker, then shut the server down.

    Args:
        timeout: Stop the campaign after this many seconds (None: run until the thinker finishes).
        progress_interval: Seconds between status lines in the log (0: none; default
            ``$DRAGON_CAMPAIGN_PROGRESS_S``, else 30; see ``dragon_campaign.progress``).
        checkpointer: Checkpoint instead of failing unfinished tasks when a signal or ``timeout`` stops the
            campaign (the thinker must implement ``checkpoint_state``); the checkpoint is removed once the
            campaign finishes.
        resume_from: A checkpoint of an earlier job (``checkpointer.load()``) to carry on from.
        resume: Without ``resume_from``: carry on from the journal of the server's run directory, whatever
            ended the earlier job (a thinker with ``checkpoint_state`` from its latest snapshot, any other
            with its finished tasks answered from the journal; see ``dragon_campaign.journal.resume``).
        snapshot_interval: Seconds between snapshots of a thinker that implements ``checkpoint_state``
            (default ``$DRAGON_CAMPAIGN_SNAPSHOT_S``, else 10).

    Raises:
        CampaignFailed: an agent raised (its exception is chained).
        CampaignSuspended: a signal or ``timeout`` stopped the campaign and it was checkpointed.
        KeyboardInterrupt: the campaign was stopped by SIGINT or SIGTERM, after a clean shutdown.
    """
    if (checkpointer is not None or resume_from is not None) and not thinker.can_checkpoint:
        raise ValueError(f"{type(thinker).__name__} cannot be checkpointed: it implements no checkpoint_state/restore_state")
    foreground.guard()  # a bare `dragon script.py` in a terminal: Ctrl-C for the campaign, and a warden
    if resume_from is not None:
        _resume(thinker, server, resume_from)
    elif resume:
        if not server.started:
            server.start()  # the journal opens with the server: results the killed job did not export go to results.jsonl
        _resume_from_journal(thinker, server)
    deadline = None if timeout is None else time.monotonic() + timeout
    stop_reason: str | None = None

    def on_signal(signum: int, count: int) -> None:
        name = signal.Signals(signum).name
        thinker.aborted.set()
        thinker.done.set()
        if count == 1:
            logger.warning(f"Received {name}: stopping the campaign")
        elif count == 2:
            logger.warning(f"Received {name} again: stopping the workers now")
            server.hurry()
        else:
            foreground.pass_to_launcher()  # started by a bare dragon (else dragon-campaign's launcher does this)

    with routed(on_signal) as signals, ProgressReporter(server, progress_interval):
        try:
            if not server.started:
                server.start()
            if server.journal is not None and thinker.can_checkpoint:
                take = _snapshots(thinker, server)
                server.queues.events.add(take())  # the state before any agent ran: every later task is known after it
                every = float(os.environ.get(SNAPSHOT_ENV, SNAPSHOT_S)) if snapshot_interval is None else snapshot_interval
                server.journal.snapshot_with(take, every)
            thinker.start()
            while thinker.is_alive():
                thinker.join(0.1)
                if stop_reason is None and signals:
                    stop_reason = signal.Signals(signals[0]).name
                elif stop_reason is None and deadline is not None and time.monotonic() > deadline:
                    stop_reason = f"the {timeout:g} s time limit"
                    logger.warning(f"The campaign reached its {timeout:g} s limit: stopping")
                elif server.failure is None:
                    continue
                thinker.aborted.set()
                thinker.done.set()
                if server.failure is not None:
                    break  # the server stopped the campaign itself: agents may wait for results forever
                server.queues.send_kill_signal(suspend=checkpointer is not None)
        finally:
            thinker.done.set()
            server.queues.send_kill_signal()
            if not server.join(server.shutdown_limit):
                logger.error(f"The task server did not stop within {server.shutdown_limit:.0f} s; going on without it")
            if thinker.ident is not None:
                thinker.join(AGENT_EXIT_S)
                if thinker.is_alive():
                    logger.error(f"Agents still running {AGENT_EXIT_S:g} s after the task server stopped are abandoned: "
                                 f"{', '.join(thinker.running_agents()) or 'unknown'}")
    if server.failure is not None or thinker.exceptions:
        _outcome(server, "failed")
    if server.failure is not None:
        raise CampaignFailed(server.failure)
    if thinker.exceptions:
        raise CampaignFailed(f"{len(thinker.exceptions)} agent(s) failed: {thinker.exceptions[0]!r}") from thinker.exceptions[0]
    if checkpointer is not None and server.queues.suspending:
        tasks, results = server.queues.suspended()
        saved = SavedCampaign(stop_reason or "stopped", tasks, results, thinker.checkpoint_state(),
                              thinker.rec.allocation() if thinker.rec is not None else None,
                              server.run_dir.results_path.stat().st_size)
        raise CampaignSuspended(saved.reason, str(checkpointer.save(saved)))
    if checkpointer is not None:
        checkpointer.discard()  # finished: a signal that came after the last task changes nothing
    elif signals:
        _outcome(server, "stopped")
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signals[0]).name}")
    _outcome(server, "finished")


def _outcome(server: DragonTaskServer, outcome: str) -> None:
    if server.journal is not None:
        server.journal.set_outcome(outcome)


def _snapshots(thinker: BaseThinker, server: DragonTaskServer) -> Callable[[], Snapshot]:
    """What the journal calls for a snapshot: the thinker's state, and the tasks it waits for just before and
    just after taking it. A task submitted meanwhile is then carried on (it is in flight after), and so is one
    whose result the thinker recorded meanwhile (in flight before, absent from the state: its result comes
    again); each in the state as well is skipped by the restored thinker (its task id is recorded).
    """
    def take() -> Snapshot:
        _, before = server.queues.in_flight()
        state = thinker.checkpoint_state()
        allocation = thinker.rec.allocation() if thinker.rec is not None else None
        seq, after = server.queues.in_flight()
        return Snapshot(seq, state, allocation, before | after)
    return take


def _resume_from_journal(thinker: BaseThinker, server: DragonTaskServer) -> None:
    """Carry on from the journal: the latest snapshot (a thinker that can restore one), else memoization."""
    if server.journal is None:
        raise ValueError("resume=True needs a task server that keeps its journal (journal=True)")
    carried = carried_from(server.run_dir.path, server.journal.session, thinker.can_checkpoint, server.memoizes, thinker.resumable_topics)
    if carried.snapshot is not None:
        snapshot = carried.snapshot
        thinker.restore_state(Resumption(snapshot.state, [task.result for task in carried.tasks] + carried.results, snapshot.allocation))
        server.queues.resume(carried.tasks, carried.results)
        logger.info(f"Resumed from the journal: the thinker's snapshot of {time.strftime('%H:%M:%S', time.localtime(snapshot.at))}, "
                    f"{len(carried.tasks)} task(s) requeued with their priorities, {len(carried.results)} result(s) delivered again")
    else:
        logger.info(f"Resumed from the journal: the thinker starts over; {carried.finished} finished task(s) answer its "
                    "submissions of the same method and inputs instead of running again")
    server.queues.memoize(carried.memo)
    dropped = server.journal.drop_earlier({task.task_id for task in carried.tasks})
    if dropped:
        logger.info(f"{dropped} unfinished task(s) of the earlier job do not carry on (the thinker submits again what it needs)")


def _resume(thinker: BaseThinker, server: DragonTaskServer, saved: SavedCampaign) -> None:
    """Give the thinker its state back and requeue what carries on (tasks of ``thinker.resumable_topics``)."""
    keep = thinker.resumable_topics

    def carried(topic: str) -> bool:
        return keep is None or topic in keep

    tasks = [task for task in saved.tasks if carried(task.result.topic)]
    results = [result for result in saved.results if carried(result.topic)]
    dropped = Counter(task.result.topic for task in saved.tasks if not carried(task.result.topic))
    dropped.update(result.topic for result in saved.results if not carried(result.topic))
    if dropped:
        logger.info(f"Not carried on from the checkpoint (the thinker redoes them as needed): {dict(dropped)}")
    thinker.restore_state(Resumption(saved.thinker_state, [task.result for task in tasks] + results, saved.allocation))
    server.queues.resume(tasks, results)
    logger.info(f"Resumed from the checkpoint ({saved.reason}): {len(tasks)} task(s) requeued with their priorities, "
                f"{len(results)} result(s) delivered again")
