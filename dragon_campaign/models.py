"""Result records: what a task asked for, what it returned, where it ran and how long each step took.

Field names follow Colmena 0.7 (``colmena.models.Result``) so that thinkers port by changing imports.
"""

from __future__ import annotations

import time
from itertools import count
from math import nan
from traceback import TracebackException
from typing import Annotated, Any
from uuid import uuid4

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, computed_field, field_serializer

# A time that may not have happened yet: NaN in Python (as in Colmena), null in JSON.
Seconds = Annotated[float, BeforeValidator(lambda value: nan if value is None else value)]

_TASK_ID_PREFIX = uuid4().hex[:20]  # 80 random bits per process, then a counter: unique like uuid4, ten times cheaper
_task_ids = count()


def new_task_id() -> str:
    """A task id of 32 hex digits, as Colmena's (a uuid4 costs a system call: 6 % of the steering process at 5,000 tasks/s)."""
    return f"{_TASK_ID_PREFIX}{next(_task_ids):012x}"


def fill(model: BaseModel, **values: Any) -> None:
    """Set fields of a model as plain assignment would (these models do not validate assignments), without
    pydantic's per-assignment dispatch: completing a task sets a dozen fields, 15 us of the steering
    process's time per task that way, 1 us this way.
    """
    model.__dict__.update(values)
    model.__pydantic_fields_set__.update(values)


class FailureInformation(BaseModel):
    """Why a task failed: the exception's repr and its formatted traceback."""

    exception: str = Field(..., description="repr() of the exception raised by the task")
    traceback: str | None = Field(None, description="Formatted traceback, where one exists")

    @classmethod
    def from_exception(cls, exc: BaseException) -> FailureInformation:
        """The failure of ``exc``: its repr and formatted traceback."""
        tb = TracebackException.from_exception(exc)
        return cls(exception=repr(exc), traceback="".join(tb.format()))


class WorkerInformation(BaseModel):
    """Which worker ran a task: the pool, the worker's slot in it, its node and GPU. A task answered from the
    journal after a resume (memoization) carries the worker of the task that ran, and ``answered_from``: that
    task's id.
    """

    model_config = ConfigDict(extra="allow")

    hostname: str | None = Field(None, description="Host name of the node that ran the task")
    pool: str | None = Field(None, description="Name of the worker pool")
    worker: int | None = Field(None, description="Index of the worker within its pool")
    pid: int | None = Field(None, description="Operating-system process id of the worker")
    gpu: int | None = Field(None, description="GPU the worker is pinned to, None for a CPU worker")
    backend: str = Field("dragon", description="What ran the task: 'dragon' (a Dragon worker pool) or 'executor' (an ExecutorPool)")
    site: str = Field("local", description="Where: 'local' for this Dragon runtime, else the ExecutorPool's site")


class ResourceRequirements(BaseModel):
    """Resources a task asks for (Colmena's names, after RADICAL-Pilot)."""

    node_count: int = Field(1, description="Total number of nodes to use for the task")
    cpu_processes: int = Field(1, description="Number of MPI ranks per node")
    cpu_threads: int = Field(1, description="Number of threads per process")

    @property
    def total_ranks(self) -> int:
        """Ranks over every node: ``node_count * cpu_processes``."""
        return self.node_count * self.cpu_processes


class Timestamps(BaseModel):
    """Wall-clock times (seconds since the epoch) of each step of a task's life."""

    created: float = Field(default_factory=time.time, description="send_inputs was called")
    dispatched: Seconds = Field(nan, description="Left the waiting queue for a worker")
    input_received: Seconds = Field(nan, description="The worker received the task")
    compute_started: Seconds = Field(nan, description="The worker started the method")
    compute_ended: Seconds = Field(nan, description="The method returned or raised")
    result_sent: Seconds = Field(nan, description="The worker sent the result")
    result_received: Seconds = Field(nan, description="The steering process received the result")

    @computed_field(description="Colmena's name for dispatched: the task server handed the task to its engine")  # type: ignore[prop-decorator]
    @property
    def start_task_submission(self) -> float:
        """Colmena's name for ``dispatched``."""
        return self.dispatched

    @computed_field(description="Colmena's name for result_received: the task server got the result back")  # type: ignore[prop-decorator]
    @property
    def task_received(self) -> float:
        """Colmena's name for ``result_received``."""
        return self.result_received


class TimeSpans(BaseModel):
    """Elapsed times in seconds."""

    running: Seconds = Field(nan, description="Runtime of the method itself")
    serialize_inputs: Seconds = Field(nan, description="Pickling the inputs in the steering process")
    deserialize_inputs: Seconds = Field(nan, description="Unpickling the inputs on the worker")
    serialize_results: Seconds = Field(nan, description="Pickling the value on the worker")
    deserialize_results: Seconds = Field(nan, description="Unpickling the value in the steering process")
    proxy: dict[str, dict[str, dict]] = Field(
        default_factory=dict, description="Per input proxy (by key): time the worker took to resolve it before the task started"
    )
    async_resolve_proxies: Seconds = Field(
        nan, description="Colmena's time to start background resolution; NaN here (input proxies are resolved up front, see proxy)"
    )
    additional: dict[str, float] = Field(default_factory=dict, description="Other timings a method reports")


class Result(BaseModel):
    """One task: its inputs, its value or failure, where it ran, and its timings."""

    model_config = ConfigDict(arbitrary_types_allowed=True, ser_json_bytes="base64")  # bytes in values: base64 in results.jsonl

    task_id: str = Field(default_factory=lambda: new_task_id(), description="Unique id of the task")
    inputs: tuple[tuple[Any, ...], dict[str, Any]] = Field(
        ((), {}), description="Positional and keyword arguments (emptied when keep_inputs is False)"
    )
    value: Any = Field(None, description="What the method returned")
    method: str = Field(..., description="Name of the method that was run")
    topic: str = Field("default", description="Topic the result is delivered to")
    success: bool | None = Field(None, description="Whether the method returned without raising")
    complete: bool | None = Field(None, description="True on a task's last result, False on a streamed intermediate one, None before")
    failure_info: FailureInformation | None = Field(None, description="Exception and traceback of a failure")
    task_info: dict[str, Any] = Field(default_factory=dict, description="User data carried with the task")
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    worker_info: WorkerInformation | None = Field(None, description="Which worker ran the task")
    keep_inputs: bool = Field(True, description="Whether inputs stay in the result once it completes")
    priority: float = Field(0.0, description="Priority when the task was dispatched (higher runs first)")
    retries: int = Field(0, description="How many times the task was re-run after a failure")
    max_retries: int = Field(0, description="How many re-runs a failure may trigger")
    timestamp: Timestamps = Field(default_factory=Timestamps)
    time: TimeSpans = Field(default_factory=TimeSpans)
    mpi_ranks: int | None = Field(None, description="Ranks that ran the task, for an MPI method (None for other methods)")
    message_sizes: dict[str, int] = Field(
        default_factory=dict, description="Pickled bytes of the inputs and the value as the task channel carried them (proxies count as their reference)"
    )

    @property
    def failure_reason(self) -> str | None:
        """Why the task failed (its exception's repr), or None if it did not fail."""
        if self.success is not False:
            return None
        return self.failure_info.exception if self.failure_info is not None else "unknown failure"

    @property
    def args(self) -> tuple[Any, ...]:
        """The task's positional arguments."""
        return self.inputs[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        """The task's keyword arguments."""
        return self.inputs[1]

    @field_serializer("value", when_used="json")
    def _serialize_value(self, value: Any) -> Any:
        return _name_proxy(value)

    @field_serializer("inputs", when_used="json")
    def _serialize_inputs(self, inputs: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
        args, kwargs = inputs
        return [[_name_proxy(a) for a in args], {k: _name_proxy(v) for k, v in kwargs.items()}]

    def json_line(self) -> str:
        """One line of JSON for results.jsonl; values JSON cannot hold are summarised, never dropped silently."""
        try:
            return self.model_dump_json(fallback=_json_fallback)
        except Exception:  # an input or value whose own serialization raises: the record stays, that part as text
            pass
        inputs: tuple[tuple[Any, ...], dict[str, Any]] = ((f"<inputs of {self.method} that JSON cannot hold>",), {})
        try:
            return self.model_copy(update={"inputs": inputs}).model_dump_json(fallback=_json_fallback)
        except Exception:
            value = f"<{type(self.value).__name__} that JSON cannot hold>"
            return self.model_copy(update={"inputs": inputs, "value": value}).model_dump_json(fallback=_json_fallback)

    def json(self, **kwargs: Any) -> str:
        """Colmena's ``Result.json``: JSON text, with pydantic's options (e.g. ``exclude={'inputs'}``)."""
        return self.model_dump_json(fallback=_json_fallback, **kwargs)


def _name_proxy(value: Any) -> Any:
    """A ProxyStore proxy becomes a short text naming its key; it is never resolved (type() does not resolve)."""
    if type(value).__module__.startswith("proxystore."):  # other ProxyStore objects (a StoreConfig) stay as they are
        from proxystore.proxy import Proxy
        from proxystore.store.utils import get_key

        if type(value) is Proxy:
            return f"<proxy {get_key(value)!r}>"
    return value


def _json_fallback(obj: Any) -> Any:
    """Numbers and arrays from numpy and torch become JSON; other objects become their repr."""
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return obj.item()
    if hasattr(obj, "tolist") and hasattr(obj, "shape"):
        n_elements = obj.numel() if hasattr(obj, "numel") else obj.size  # torch tensor or numpy array
        if n_elements <= 1024:
            return obj.tolist()
        return f"<{type(obj).__name__} shape={tuple(obj.shape)} dtype={obj.dtype}>"
    return repr(obj)
