"""Parsl configurations for ``ExecutorPool(ParslPoolExecutor(config), ...)``: this node, and Polaris.

Both keep Parsl's ZeroMQ links encrypted (CurveZMQ, ``encrypted=True``) and bind the interchange's worker
ports to one address, never to every interface: loopback on this node, the high-speed interface's address
on Polaris. A steering process outside Polaris reaches such an interchange only through an SSH tunnel
(``ssh -N -L 55000-55100:localhost:55000-55100 polaris``-style forwards of ``worker_port_range``, as in
the original studies); see the README.
"""

from __future__ import annotations

from parsl.addresses import address_by_interface
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.launchers import MpiExecLauncher
from parsl.providers import LocalProvider, PBSProProvider

LOOPBACK = "127.0.0.1"


def local_htex(run_dir: str, workers: int, worker_init: str = "", label: str = "htex-local") -> Config:
    """An HTEX with ``workers`` workers on this node, reachable over loopback only."""
    executor = HighThroughputExecutor(label=label, address=LOOPBACK, loopback_address=LOOPBACK, max_workers_per_node=workers,
                                      encrypted=True, provider=LocalProvider(init_blocks=1, max_blocks=1, worker_init=worker_init))
    return Config(executors=[executor], run_dir=run_dir)


def polaris_htex(
    run_dir: str,
    account: str,
    queue: str,
    nodes: int = 1,
    walltime: str = "01:00:00",
    worker_init: str = "",
    filesystems: str = "home:eagle",
    interface: str = "bond0",
    gpus_per_node: int = 4,
    label: str = "htex-polaris",
) -> Config:
    """An HTEX on Polaris compute nodes through PBS: one worker per GPU, pinned with ``available_accelerators``.

    Args:
        worker_init: Shell lines run before the workers start (load modules, activate the environment that
            has ``dragon_campaign`` installed; Dragon itself is not needed there).
        interface: The interface whose address the interchange binds (bond0: Polaris' high-speed network).
    """
    provider = PBSProProvider(
        account=account,
        queue=queue,
        select_options=f"ngpus={gpus_per_node}",
        scheduler_options=f"#PBS -l filesystems={filesystems}",
        worker_init=worker_init,
        walltime=walltime,
        nodes_per_block=nodes,
        init_blocks=1,
        min_blocks=0,
        max_blocks=1,
        cpus_per_node=64,
        launcher=MpiExecLauncher(bind_cmd="--cpu-bind", overrides="--depth=64 --ppn 1"),
    )
    executor = HighThroughputExecutor(label=label, address=address_by_interface(interface), loopback_address=LOOPBACK,
                                      available_accelerators=gpus_per_node, max_workers_per_node=gpus_per_node,
                                      cpu_affinity="block-reverse", prefetch_capacity=0, encrypted=True, provider=provider)
    return Config(executors=[executor], run_dir=run_dir, retries=1)
