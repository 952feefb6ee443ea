"""Worker pools: how many workers, of which kind, and where each one is placed in the Dragon runtime."""

from __future__ import annotations

import logging
from dataclasses import field
from typing import TYPE_CHECKING

import pydantic

from dragon_campaign.server.slot import WorkerSlot

if TYPE_CHECKING:  # Dragon is imported where workers are placed, not where a configuration is checked
    from dragon.native.machine import Node

logger = logging.getLogger(__name__)


@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class WorkerPool:
    """A named group of long-lived worker processes that serve the methods bound to it.

    ``WorkerPool(workers=None, gpus=False, cpu_fallback_workers=1, env={}, prefetch_seconds=0.002,
    max_prefetch=64, relayed=False)``, every parameter by keyword (the keys of a ``pools:`` entry).

    Attributes:
        workers: CPU pool: total workers, spread round-robin over every node of the runtime
            (default: one per core). GPU pool: at most this many GPU workers (default: one per GPU).
        gpus: One worker per GPU, pinned to it through Dragon's GPU affinity and ``CUDA_VISIBLE_DEVICES``.
            A node without GPUs gets ``cpu_fallback_workers`` CPU workers instead, and the log says so.
        cpu_fallback_workers: Workers per GPU-less node for a GPU pool.
        env: Extra environment variables for the workers.
        prefetch_seconds: How much estimated work (seconds, from the method's running average) a busy
            worker may hold beyond its current task. Tasks of unknown duration are sent only to idle
            workers, so long tasks always leave the waiting queue in priority order; tiny tasks travel in
            batches, which is what makes thousands of tasks per second possible.
        max_prefetch: Upper bound on the tasks a worker holds beyond its current one.
        relayed: Reach this pool's workers on nodes other than the steering process's through one relay process
            per node (``dragon_campaign.server.relay``): each dispatch sends one message per node instead of
            one per worker, and each node's results come back in batches. Scheduling stays in the steering
            process, so priorities and cancellation are as exact as without. For campaigns of many nodes and
            short tasks; see docs/scaling.md for what it saves.
    """

    workers: pydantic.PositiveInt | None = None
    gpus: bool = False
    cpu_fallback_workers: pydantic.PositiveInt = 1
    env: dict[str, str] = field(default_factory=dict)
    prefetch_seconds: pydantic.NonNegativeFloat = 0.002
    max_prefetch: pydantic.NonNegativeInt = 64
    relayed: bool = False


def runtime_nodes() -> list[Node]:
    """The nodes of the running Dragon runtime, primary node first."""
    from dragon.native.machine import Node, System

    nodes = [Node(h_uid) for h_uid in System().nodes]
    return sorted(nodes, key=lambda node: (not node.is_primary, node.hostname))


def place_workers(name: str, pool: WorkerPool, nodes: list[Node]) -> list[WorkerSlot]:
    """Decide the slot of every worker of a pool."""
    if not pool.gpus:
        count = pool.workers or sum(node.num_cpus for node in nodes)
        return [WorkerSlot(name, i, nodes[i % len(nodes)].hostname) for i in range(count)]

    gpu_slots: list[tuple[str, int]] = [(node.hostname, gpu) for node in nodes for gpu in range(node.num_gpus)]
    if pool.workers is not None:
        gpu_slots = gpu_slots[: pool.workers]
    slots = [WorkerSlot(name, i, host, gpu) for i, (host, gpu) in enumerate(gpu_slots)]
    for node in nodes:
        if node.num_gpus == 0:
            logger.warning(
                f"Pool {name!r}: node {node.hostname} has no GPU; running {pool.cpu_fallback_workers} CPU worker(s) there instead"
            )
            for _ in range(pool.cpu_fallback_workers):
                slots.append(WorkerSlot(name, len(slots), node.hostname))
    return slots


def gpu_env_var(nodes: list[Node]) -> str:
    """The variable that selects GPUs on these nodes (CUDA_VISIBLE_DEVICES unless Dragon reports another vendor's)."""
    for node in nodes:
        if node.num_gpus and node.gpu_env_str:
            return node.gpu_env_str
    return "CUDA_VISIBLE_DEVICES"
