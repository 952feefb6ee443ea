"""BaseThinker: the steering program, a thread whose agents (methods marked with decorators) run as threads.

Colmena 0.7 semantics: when any agent returns (unless marked ``startup=True``) or raises, ``done`` is set and
the other agents wind down; result processors keep draining until every outstanding task has come back.
Beyond Colmena: an agent that raises also sets ``aborted``, which makes result processors stop at once
instead of waiting for tasks that may never be consumed, and the exception is kept in ``exceptions`` so
the caller can report it (the launcher exits non-zero).

A thinker that implements ``checkpoint_state`` and ``restore_state`` can be checkpointed at walltime and
resumed in the next job (see ``dragon_campaign.campaign.run_campaign``). While a campaign is suspended
for a checkpoint, ``get_result`` and ``send_inputs`` raise ``KillSignalException`` in agents that still
wait or submit; that ends the agent quietly.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dragon_campaign.exceptions import KillSignalException
from dragon_campaign.models import Result
from dragon_campaign.queues.dragon import DragonQueues
from dragon_campaign.thinker.agents import AgentSpec, spec_of
from dragon_campaign.thinker.resources import ResourceCounter


class _AgentLocal(threading.local):
    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.name: str | None = None


@dataclass(frozen=True)
class Resumption:
    """What a thinker gets back from a checkpoint in the next job."""

    state: Any  # what checkpoint_state returned
    carried: list[Result]  # tasks that carry on (requeued) and results not yet taken (delivered again)
    allocation: dict[str, int] | None  # the resource counter's allocation at the checkpoint


class BaseThinker(threading.Thread):
    """Subclass it, mark methods with ``@agent``, ``@result_processor``, ``@task_submitter`` or
    ``@event_responder``, then ``start()`` and ``join()`` it.
    """

    resumable_topics: tuple[str, ...] | None = None
    """Topics whose unfinished tasks carry on into the next job after a checkpoint (None: every topic).
    Tasks of other topics are dropped on resume: the thinker must redo them itself if it needs them."""

    def __init__(
        self,
        queues: DragonQueues | None = None,
        resource_counter: ResourceCounter | None = None,
        daemon: bool = True,
        logger_name: str | None = None,
        *,
        queue: DragonQueues | None = None,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            queues: The task queues (``queue=``, Colmena's keyword, is accepted too).
            resource_counter: Tracks which task types hold how many slots.
            daemon: Run the thinker thread as a daemon.
            logger_name: Root of the agents' logger names (default: the thinker's module and class).
            kwargs: Passed to ``threading.Thread``.
        """
        if (queues is None) == (queue is None):
            raise TypeError("BaseThinker needs its task queues exactly once: as queues= (or queue=, Colmena's name)")
        super().__init__(daemon=daemon, **kwargs)
        chosen = queues if queues is not None else queue
        assert chosen is not None  # exactly one was given (checked above)
        self.queues: DragonQueues = chosen
        self.rec = resource_counter
        self.logger_name = logger_name
        self.done = threading.Event()
        self.submitters_done = threading.Event()
        self.aborted = threading.Event()
        self.exceptions: list[BaseException] = []
        self.barriers: dict[str, threading.Barrier] = {}
        self._agent_threads: list[threading.Thread] = []
        self.local_details = _AgentLocal(self.make_logger())
        """Per-agent state (a ``threading.local``): ``name`` and ``logger``, plus what ``prepare_agent`` adds."""

    @property
    def logger(self) -> logging.Logger:
        """The logger of the calling agent (``<module>.<Class>.<agent>``)."""
        return self.local_details.logger

    @property
    def agent_name(self) -> str | None:
        """The name of the agent running in this thread (None outside agents)."""
        return self.local_details.name

    def make_logger(self, name: str | None = None) -> logging.Logger:
        """A logger under the thinker's, for an agent or a helper."""
        base = self.logger_name or f"{type(self).__module__}.{type(self).__name__}"
        return logging.getLogger(base if name is None else f"{base}.{name}")

    # -- checkpoints ------------------------------------------------------------------------------------------
    @property
    def can_checkpoint(self) -> bool:
        """Whether the thinker implements ``checkpoint_state`` (and can be resumed)."""
        cls = type(self)
        return cls.checkpoint_state is not BaseThinker.checkpoint_state and cls.restore_state is not BaseThinker.restore_state

    def checkpoint_state(self) -> Any:
        """Override: the thinker's state for a checkpoint (picklable). Called once every agent has stopped, and
        also while they run, for the journal's periodic snapshots: take your lock and return copies, not the
        lists the agents go on appending to.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement checkpoint_state")

    def restore_state(self, resumption: Resumption) -> None:
        """Override: take the state back before the agents start (and restore the resource counter).

        From a snapshot, ``resumption.carried`` may hold a result the state already counts (an agent had taken
        and recorded it, but not yet called the queues again, when the snapshot was taken): it comes back
        through ``get_result`` like the others, so skip results whose ``task_id`` you have recorded.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement restore_state")

    def prepare_agent(self) -> None:
        """Override to set up per-agent state in ``self.local_details`` (runs in the agent's thread before it starts)."""

    def tear_down_agent(self) -> None:
        """Override to clean up per-agent state (runs in the agent's thread after it ends)."""

    @classmethod
    def list_agents(cls) -> list[Callable]:
        """Every agent method of the class."""
        return [getattr(cls, name) for name in dir(cls) if spec_of(getattr(cls, name, None)) is not None]

    def _run_agent(self, func: Callable) -> Callable:
        self.local_details.name = func.__name__
        self.local_details.logger = self.make_logger(func.__name__)
        self.prepare_agent()
        self.logger.info(f"{func.__name__} started")
        try:
            func(self)
        except (KillSignalException, threading.BrokenBarrierError) as exc:  # a stop or a checkpoint ends agents this way
            if self.queues.suspending or self.done.is_set():  # asked to stop: an agent caught mid-submission did nothing wrong
                self.logger.info(f"{func.__name__} stopped: the campaign is {'being checkpointed' if self.queues.suspending else 'stopping'}")
                self._abort_barriers()
            else:
                self._agent_failed(func, exc)
        except BaseException as exc:
            self._agent_failed(func, exc)
        else:
            if not _spec(func).startup:
                self.done.set()
        finally:
            self.tear_down_agent()
            self.logger.info(f"{func.__name__} finished")
        return func

    def running_agents(self) -> list[str]:
        """Names of the agents whose threads are still running."""
        return [t.name.rsplit("-", 1)[-1] for t in self._agent_threads if t.is_alive()]

    def _agent_failed(self, func: Callable, exc: BaseException) -> None:
        self.logger.error(f"{func.__name__} raised {exc!r}; stopping the thinker", exc_info=exc)
        self.exceptions.append(exc)
        self.aborted.set()
        self.done.set()
        self._abort_barriers()

    def _abort_barriers(self) -> None:
        for barrier in self.barriers.values():
            barrier.abort()  # responders waiting for an agent that ended would wait forever

    def run(self) -> None:
        """Run every agent in a thread of its own until the thinker is done (``start`` calls it)."""
        agents = self.list_agents()
        if not agents:
            raise ValueError(f"{type(self).__name__} has no agents: mark methods with @agent or another agent decorator")
        specs = [_spec(a) for a in agents]
        if self.rec is None and any(spec.kind == "task_submitter" for spec in specs):
            raise ValueError(f"{type(self).__name__} has task_submitter agents but no resource_counter")
        responders = Counter(spec.event_name for spec in specs if spec.kind == "event_responder")
        self.barriers = {str(name): threading.Barrier(count) for name, count in responders.items()}
        submitters = sum(spec.kind == "task_submitter" for spec in specs)
        if submitters == 0:
            self.submitters_done.set()
        self.logger.info(f"{type(self).__name__} starting {len(agents)} agents in process {os.getpid()}")
        # daemon threads, not a thread pool: an agent that never returns must not keep the process alive
        finished: queue.SimpleQueue[Callable] = queue.SimpleQueue()
        def run_and_report(agent: Callable) -> None:
            try:
                self._run_agent(agent)
            finally:
                finished.put(agent)

        self._agent_threads = [threading.Thread(target=run_and_report, args=(a,), daemon=True,
                                                name=f"{type(self).__name__}-{a.__name__}") for a in agents]
        for thread in self._agent_threads:
            thread.start()
        for _ in agents:
            if _spec(finished.get()).kind == "task_submitter":
                submitters -= 1
                if submitters == 0:
                    self.submitters_done.set()
        self.logger.info(f"{type(self).__name__} finished")


def _spec(function: Callable) -> AgentSpec:
    spec = spec_of(function)
    assert spec is not None, f"{function!r} is not an agent"
    return spec
