"""Steering: the thinker, its agent decorators and the resource counter."""

from dragon_campaign.thinker.agents import agent, event_responder, result_processor, task_submitter
from dragon_campaign.thinker.base import BaseThinker, Resumption
from dragon_campaign.thinker.resources import ReallocatorThread, ResourceCounter

__all__ = [
    "BaseThinker",
    "ReallocatorThread",
    "ResourceCounter",
    "Resumption",
    "agent",
    "event_responder",
    "result_processor",
    "task_submitter",
]
