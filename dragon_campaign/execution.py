"""Running one task where it lands: in a Dragon worker, or on a remote executor's worker.

Nothing here imports Dragon, so Parsl and Globus Compute workers at other sites can run tasks with only
``dragon_campaign`` and its pure-Python dependencies installed.
"""

from __future__ import annotations

import functools
import inspect
import os
import pickle
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

from dragon_campaign.methods import PythonGeneratorMethod
from dragon_campaign.mpi import MPIMethod
from dragon_campaign.queues.proxying import proxy_result, resolve_input_proxies
from dragon_campaign.wire import PICKLE_PROTOCOL, Failure, Layout, TaskRecord

ONE_PROCESS = Layout()


def run_task(
    methods: dict[str, Callable[..., Any]], task_id: str, method: str, inputs: bytes, proxy_rule: Any, received: float,
    layout: Layout = ONE_PROCESS, emit: Callable[[bytes], None] | None = None,
) -> TaskRecord:
    """Run one task; every failure (bad inputs, exception, unpicklable value) becomes a failed record.

    As in Colmena, a function with a ``_resources`` parameter gets the task's ResourceRequirements there,
    and a generator function's value is the list of what it yielded. A streaming PythonGeneratorMethod
    hands each yielded item, pickled (large ones proxied like values), to ``emit`` as it comes.
    """
    deserialize = running = serialize = 0.0
    proxy_times = None
    started = ended = time.time()
    function = methods[method]
    mpi = function if isinstance(function, MPIMethod) else None
    ranks_layout = mpi.layout(layout.node_count, layout.cpu_processes) if mpi is not None else None
    ranks = ranks_layout.ranks if ranks_layout is not None else None
    try:
        tick = time.perf_counter()
        args, kwargs = pickle.loads(inputs)
        deserialize = time.perf_counter() - tick
        proxy_times = resolve_input_proxies(args, kwargs) or None
        started = time.time()
        tick = time.perf_counter()
        try:
            if mpi is not None and ranks_layout is not None:
                value, ranks = mpi.run(args, kwargs, ranks_layout)
            else:
                if _takes_resources(function):
                    from dragon_campaign.models import ResourceRequirements  # pydantic: only workers that need it import it

                    kwargs = {**kwargs, "_resources": ResourceRequirements(**layout._asdict())}
                if isinstance(function, PythonGeneratorMethod):
                    value = function.run(args, kwargs, None if emit is None else lambda item: emit(_pickled(item, method, proxy_rule)))
                else:
                    value = function(*args, **kwargs)
                if inspect.isgenerator(value):
                    value = list(value)
        finally:
            running = time.perf_counter() - tick
            ended = time.time()
        tick = time.perf_counter()
        payload = _pickled(value, method, proxy_rule)
        serialize = time.perf_counter() - tick
        return TaskRecord(task_id, True, payload, None, received, started, ended, deserialize, running, serialize, ranks, proxy_times)
    except (Exception, SystemExit) as exc:
        failure = Failure(repr(exc), "".join(traceback.format_exception(exc)))
        return TaskRecord(task_id, False, None, failure, received, started, ended, deserialize, running, serialize, ranks, proxy_times)


def _pickled(value: Any, method: str, proxy_rule: Any) -> bytes:
    try:
        return pickle.dumps(proxy_result(value, proxy_rule), protocol=PICKLE_PROTOCOL)
    except Exception as exc:
        raise TypeError(f"The value returned by {method!r} cannot be pickled: {exc!r}") from exc


@functools.lru_cache(maxsize=1024)
def _takes_resources(function: Callable[..., Any]) -> bool:
    """Whether ``function`` has a ``_resources`` parameter (looked up once per function)."""
    try:
        return "_resources" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a callable without a signature (some builtins)
        return False


def run_remote(function: Callable[..., Any], task_id: str, method: str, payload: bytes, proxy_rule: Any,
               layout: Layout = ONE_PROCESS) -> tuple[TaskRecord, dict[str, Any], float]:
    """What a remote executor runs for one task: the record, where it ran, and when the result left.

    ``payload`` is the pickled arguments (not ``inputs``: Parsl apps reserve that name for input files).
    """
    record = run_task({method: function}, task_id, method, payload, proxy_rule, time.time(), layout)
    return record, {"hostname": socket.gethostname(), "pid": os.getpid()}, time.time()
