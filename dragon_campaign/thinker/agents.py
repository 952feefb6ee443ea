"""Decorators that turn thinker methods into agents (threads), with Colmena 0.7's names and semantics."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial, update_wrapper
from threading import Event
from typing import TYPE_CHECKING, Any, NamedTuple

from dragon_campaign.exceptions import TimeoutException
from dragon_campaign.thinker.resources import ReallocatorThread

if TYPE_CHECKING:
    from dragon_campaign.thinker.base import BaseThinker

REACTION_TIME_S = 0.1  # how quickly a waiting agent notices that the thinker is done

AgentFunction = Callable[..., None]  # a thinker method, called with the thinker
SPEC_ATTRIBUTE = "__dragon_campaign_agent__"


class AgentSpec(NamedTuple):
    """What the decorators record on an agent method."""

    kind: str = "agent"  # agent, result_processor, task_submitter or event_responder
    startup: bool = False  # returning normally does not end the thinker
    event_name: str | None = None  # an event_responder's event


def spec_of(function: object) -> AgentSpec | None:
    """The agent spec of a thinker attribute, or None if it is not an agent."""
    return getattr(function, SPEC_ATTRIBUTE, None)


def agent(func: AgentFunction | None = None, startup: bool = False) -> Any:
    """Mark a method as an agent thread, started with the thinker.

    Args:
        startup: If True, this agent returning normally does not stop the other agents
            (an exception still does).
    """

    def decorator(f: AgentFunction) -> AgentFunction:
        spec = spec_of(f) or AgentSpec()
        setattr(f, SPEC_ATTRIBUTE, spec._replace(startup=startup))
        return f

    return decorator if func is None else decorator(func)


def _wrap(spec: AgentSpec, runner: Callable[..., None], f: Callable[..., Any], **options: object) -> AgentFunction:
    wrapped = update_wrapper(partial(runner, process_func=f, **options), f)
    setattr(wrapped, SPEC_ATTRIBUTE, spec)
    return agent(wrapped)


def _result_processor_loop(thinker: BaseThinker, process_func: Callable, topic: str | None) -> None:
    while not thinker.aborted.is_set() and (
        not (thinker.done.is_set() and thinker.submitters_done.is_set()) or thinker.queues.active_count > 0
    ):
        try:
            result = thinker.queues.get_result(topic=topic, timeout=REACTION_TIME_S)
        except TimeoutException:
            continue
        start = time.perf_counter()
        process_func(thinker, result)
        thinker.logger.debug(f"Processed a result of topic {topic} in {time.perf_counter() - start:.3e} s")


def result_processor(func: Callable | None = None, topic: str | None = "default") -> Callable:
    """An agent that calls the method with each result of ``topic`` (None: any topic) until the thinker is
    done, every submitter has finished and no task is outstanding.
    """

    def decorator(f: Callable) -> AgentFunction:
        return _wrap(AgentSpec("result_processor"), _result_processor_loop, f, topic=topic)

    return decorator if func is None else decorator(func)


def _task_submitter_loop(thinker: BaseThinker, process_func: Callable, task_type: str | None, n_slots: int | str) -> None:
    slots = n_slots if isinstance(n_slots, int) else getattr(thinker, n_slots)
    counter = thinker.rec
    assert counter is not None  # BaseThinker.run refuses task submitters without a resource counter
    while not thinker.done.is_set():
        if counter.acquire(task_type, slots, cancel_if=thinker.done):
            process_func(thinker)


def task_submitter(func: Callable | None = None, task_type: str | None = None, n_slots: int | str = 1) -> Callable:
    """An agent that calls the method each time ``n_slots`` slots of ``task_type`` are acquired from the
    thinker's ResourceCounter (``n_slots`` may name an attribute of the thinker).
    """

    def decorator(f: Callable) -> AgentFunction:
        return _wrap(AgentSpec("task_submitter"), _task_submitter_loop, f, task_type=task_type, n_slots=n_slots)

    return decorator if func is None else decorator(func)


def _event_responder_loop(
    thinker: BaseThinker,
    process_func: Callable,
    event_name: str,
    reallocate_resources: bool,
    gather_from: str | None,
    gather_to: str | None,
    disperse_to: str | None,
    max_slots: int | str | None,
    slot_step: int,
) -> None:
    event = getattr(thinker, event_name, None)
    if not isinstance(event, Event):
        raise ValueError(f"{type(thinker).__name__} has no threading.Event attribute named {event_name!r}")
    slots_limit: int | None = getattr(thinker, max_slots) if isinstance(max_slots, str) else max_slots
    if reallocate_resources and thinker.rec is None:
        raise ValueError(f"{type(thinker).__name__}: an event responder that reallocates resources needs a resource_counter")
    barrier = thinker.barriers[event_name]
    while not thinker.done.is_set():
        if not event.wait(REACTION_TIME_S):
            continue
        reallocator = None
        if reallocate_resources and thinker.rec is not None:
            reallocator = ReallocatorThread(
                thinker.rec, gather_from, gather_to, disperse_to, slots_limit, slot_step=slot_step,
                logger_name=f"{thinker.logger.name}.allocate",
            )
            reallocator.start()
        try:
            process_func(thinker)
        finally:
            if reallocator is not None:
                reallocator.stop_event.set()
                reallocator.join()
        barrier.wait()  # every responder to this event has finished
        event.clear()


def event_responder(
    func: Callable | None = None,
    event_name: str | None = None,
    reallocate_resources: bool = False,
    gather_from: str | None = None,
    gather_to: str | None = None,
    disperse_to: str | None = None,
    max_slots: int | str | None = None,
    slot_step: int = 1,
) -> Callable:
    """An agent that calls the method each time the thinker's Event ``event_name`` is set, then clears it
    once every responder to that event has finished. With ``reallocate_resources``, slots move from
    ``gather_from`` to ``gather_to`` (up to ``max_slots``) while the method runs, then to ``disperse_to``.
    """
    if event_name is None:
        raise ValueError("event_responder needs an event_name")
    if reallocate_resources and gather_from == gather_to:
        raise ValueError("Slots must be gathered from and into different task types")

    def decorator(f: Callable) -> AgentFunction:
        return _wrap(
            AgentSpec("event_responder", event_name=event_name), _event_responder_loop, f, event_name=event_name,
            reallocate_resources=reallocate_resources, gather_from=gather_from, gather_to=gather_to,
            disperse_to=disperse_to, max_slots=max_slots, slot_step=slot_step,
        )

    return decorator if func is None else decorator(func)
