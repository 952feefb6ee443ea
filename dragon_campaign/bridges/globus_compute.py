"""Globus Compute: the real ``Executor`` for an endpoint, and a local stand-in with the same interface.

With an endpoint, ``globus_compute_executor(endpoint_id)`` is ``globus_compute_sdk.Executor``: tasks go
through Globus' cloud service to the endpoint, which runs them on its engine (a Parsl HTEX).

Globus' service cannot be reached from this project's test and benchmark machines, so
``LocalComputeExecutor`` stands in for it there. It does what happens on both ends of the service:
the function, its arguments and its result are serialized with the SDK's own ``ComputeSerializer``,
and an engine runs the packed task (a Parsl HTEX, as on an endpoint, or any executor). It leaves out
the service itself (HTTPS submission, result delivery through the cloud), so times measured through
it are a lower bound of a real endpoint's.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from globus_compute_sdk.serialize import ComputeSerializer


def globus_compute_executor(endpoint_id: str, **options: Any) -> Executor:
    """``globus_compute_sdk.Executor`` for one endpoint (it logs in through Globus Auth on first use)."""
    from globus_compute_sdk import Executor as ComputeExecutor

    return ComputeExecutor(endpoint_id=endpoint_id, **options)


def run_packed(packed: str) -> str:
    """On the engine's worker: unpack and run one task, return its serialized result (as an endpoint does)."""
    serializer = ComputeSerializer()
    function, args, kwargs = (serializer.deserialize(buffer) for buffer in serializer.unpack_buffers(packed))
    return serializer.serialize(function(*args, **kwargs))


class LocalComputeExecutor(Executor):
    """``globus_compute_sdk.Executor``'s interface and serialization, run by a local ``engine``.

    Args:
        engine: Runs ``run_packed``; it is shut down with this executor.
    """

    def __init__(self, engine: Executor) -> None:
        self.engine = engine
        self.serializer = ComputeSerializer()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Pack the call as Globus Compute would and have the engine run it; the future gives the unpacked result."""
        serialize = self.serializer.serialize
        packed = self.serializer.pack_buffers([serialize(fn), serialize(args), serialize(kwargs)])
        outer: Future = Future()
        self.engine.submit(run_packed, packed).add_done_callback(lambda inner: self._deliver(inner, outer))
        return outer

    def _deliver(self, inner: Future, outer: Future) -> None:
        if not outer.set_running_or_notify_cancel():
            return
        try:
            outer.set_result(self.serializer.deserialize(inner.result()))
        except BaseException as exc:  # the task raised, or its result could not be deserialized
            outer.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the engine down."""
        self.engine.shutdown(wait=wait, cancel_futures=cancel_futures)
