"""Running one task where it lands: in a Dragon worker, or on a remote executor's worker.

Nothing here imports Dragon, so Parsl and Globus Compute workers at other sites can run tasks with only
``dragon_campaign`` and its pure-Python dependencies installed.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

from dragon_campaign.mpi import MPIMethod
from dragon_campaign.queues.dragon import PICKLE_PROTOCOL
from dragon_campaign.queues.proxying import proxy_result

FailureTuple = tuple[str, str]  # repr(exception), formatted traceback
TaskRecord = tuple[
    str,  # task id
    bool,  # success
    bytes | None,  # pickled value
    FailureTuple | None,
    tuple[float, float, float],  # input received, compute started, compute ended (wall clock)
    tuple[float, float, float],  # deserialize inputs, running, serialize result (seconds)
    int | None,  # ranks that ran an MPI method, else None
]
Layout = tuple[int, int]  # the task's resources: node_count, cpu_processes (ranks per node of an MPI method)


def run_task(
    methods: dict[str, Callable[..., Any]], task_id: str, method: str, inputs: bytes, proxy_rule: Any, received: float,
    layout: Layout = (1, 1),
) -> TaskRecord:
    """Run one task; every failure (bad inputs, exception, unpicklable value) becomes a failed record."""
    deserialize = running = serialize = 0.0
    started = ended = time.time()
    function = methods[method]
    ranks_layout = function.layout(*layout) if isinstance(function, MPIMethod) else None
    ranks = ranks_layout.ranks if ranks_layout is not None else None
    try:
        tick = time.perf_counter()
        args, kwargs = pickle.loads(inputs)
        deserialize = time.perf_counter() - tick
        started = time.time()
        tick = time.perf_counter()
        try:
            if ranks_layout is not None:
                value, ranks = function.run(args, kwargs, ranks_layout)
            else:
                value = function(*args, **kwargs)
        finally:
            running = time.perf_counter() - tick
            ended = time.time()
        tick = time.perf_counter()
        try:
            payload = pickle.dumps(proxy_result(value, proxy_rule), protocol=PICKLE_PROTOCOL)
        except Exception as exc:
            raise TypeError(f"The value returned by {method!r} cannot be pickled: {exc!r}") from exc
        serialize = time.perf_counter() - tick
        return task_id, True, payload, None, (received, started, ended), (deserialize, running, serialize), ranks
    except (Exception, SystemExit) as exc:
        failure = (repr(exc), "".join(traceback.format_exception(exc)))
        return task_id, False, None, failure, (received, started, ended), (deserialize, running, serialize), ranks


def run_remote(function: Callable[..., Any], task_id: str, method: str, payload: bytes, proxy_rule: Any,
               layout: Layout = (1, 1)) -> tuple[TaskRecord, dict[str, Any], float]:
    """What a remote executor runs for one task: the record, where it ran, and when the result left.

    ``payload`` is the pickled arguments (not ``inputs``: Parsl apps reserve that name for input files).
    """
    record = run_task({method: function}, task_id, method, payload, proxy_rule, time.time(), layout)
    return record, {"hostname": socket.gethostname(), "pid": os.getpid()}, time.time()
