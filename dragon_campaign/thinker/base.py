"""BaseThinker: the steering program, a thread whose agents (methods marked with decorators) run as threads.

Colmena 0.7 semantics: when any agent returns (unless marked ``startup=True``) or raises, ``done`` is set and
the other agents wind down; result processors keep draining until every outstanding task has come back.
Beyond Colmena: an agent that raises also sets ``aborted``, which makes result processors stop at once
instead of waiting for tasks that may never be consumed, and the exception is kept in ``exceptions`` so
the caller can report it (the launcher exits non-zero).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from dragon_campaign.queues.dragon import DragonQueues
from dragon_campaign.thinker.resources import ResourceCounter


class _AgentLocal(threading.local):
    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.name: str | None = None


class BaseThinker(threading.Thread):
    """Subclass it, mark methods with ``@agent``, ``@result_processor``, ``@task_submitter`` or
    ``@event_responder``, then ``start()`` and ``join()`` it."""

    def __init__(
        self,
        queues: DragonQueues,
        resource_counter: ResourceCounter | None = None,
        daemon: bool = True,
        logger_name: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(daemon=daemon, **kwargs)
        self.queues = queues
        self.rec = resource_counter
        self.logger_name = logger_name
        self.done = threading.Event()
        self.submitters_done = threading.Event()
        self.aborted = threading.Event()
        self.exceptions: list[BaseException] = []
        self.barriers: dict[str, threading.Barrier] = {}
        self._local = _AgentLocal(self.make_logger())

    @property
    def logger(self) -> logging.Logger:
        """The logger of the calling agent (``<module>.<Class>.<agent>``)."""
        return self._local.logger

    @property
    def agent_name(self) -> str | None:
        return self._local.name

    def make_logger(self, name: str | None = None) -> logging.Logger:
        base = self.logger_name or f"{type(self).__module__}.{type(self).__name__}"
        return logging.getLogger(base if name is None else f"{base}.{name}")

    def prepare_agent(self) -> None:
        """Override to set up per-agent state (runs in the agent's thread before it starts)."""

    def tear_down_agent(self) -> None:
        """Override to clean up per-agent state (runs in the agent's thread after it ends)."""

    @classmethod
    def list_agents(cls) -> list[Callable]:
        return [getattr(cls, name) for name in dir(cls) if hasattr(getattr(cls, name, None), "_agent_kind")]

    def _run_agent(self, func: Callable) -> Callable:
        self._local.name = func.__name__
        self._local.logger = self.make_logger(func.__name__)
        self.prepare_agent()
        self.logger.info(f"{func.__name__} started")
        try:
            func(self)
        except BaseException as exc:
            self.logger.exception(f"{func.__name__} raised {exc!r}; stopping the thinker")
            self.exceptions.append(exc)
            self.aborted.set()
            self.done.set()
            for barrier in self.barriers.values():
                barrier.abort()  # responders waiting for this agent would wait forever
        else:
            if not getattr(func, "_agent_startup", False):
                self.done.set()
        finally:
            self.tear_down_agent()
            self.logger.info(f"{func.__name__} finished")
        return func

    def run(self) -> None:
        agents = self.list_agents()
        if not agents:
            raise ValueError(f"{type(self).__name__} has no agents: mark methods with @agent or another agent decorator")
        if self.rec is None and any(a._agent_kind == "task_submitter" for a in agents):
            raise ValueError(f"{type(self).__name__} has task_submitter agents but no resource_counter")
        responders = Counter(a._event_name for a in agents if a._agent_kind == "event_responder")
        self.barriers = {name: threading.Barrier(count) for name, count in responders.items()}
        submitters = sum(1 for a in agents if a._agent_kind == "task_submitter")
        if submitters == 0:
            self.submitters_done.set()
        self.logger.info(f"{type(self).__name__} starting {len(agents)} agents in process {os.getpid()}")
        with ThreadPoolExecutor(max_workers=len(agents), thread_name_prefix=type(self).__name__) as pool:
            futures = [pool.submit(self._run_agent, a) for a in agents]
            for future in as_completed(futures):
                if future.result()._agent_kind == "task_submitter":
                    submitters -= 1
                    if submitters == 0:
                        self.submitters_done.set()
        self.logger.info(f"{type(self).__name__} finished")
