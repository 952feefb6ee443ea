"""Executor pools declared in a campaign file, started before the campaign and shut down after it.

A pool of the launcher's ``pools:`` section with an ``executor:`` key runs its methods elsewhere::

    pools:
      cpu: {workers: 4}
      remote: {executor: parsl-polaris, account: MYPROJ, queue: debug, worker_init: "source ~/env/bin/activate"}

Kinds: ``parsl-local`` (a Parsl HTEX on this node, loopback only), ``parsl-polaris`` (a Parsl HTEX on
Polaris compute nodes through PBS, one worker per GPU), ``globus-compute`` (a Globus Compute endpoint),
and ``globus-compute-local`` (Globus Compute's interface and serialization over a local HTEX, for
machines that cannot reach Globus' service; see ``dragon_campaign.bridges.globus_compute``).
No option holds a credential: Globus Compute logs in through Globus Auth, Redis passwords come from
the environment (``ProxyStoreSettings``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from dragon_campaign.bridges.executors import ExecutorPool

ExecutorKind = Literal["parsl-local", "parsl-polaris", "globus-compute", "globus-compute-local"]


class ExecutorSpec(BaseModel):
    """One pool whose tasks run on an executor (the keys of an ``executor:`` entry of ``pools:``)."""

    model_config = ConfigDict(extra="forbid")

    executor: ExecutorKind = Field(..., description="parsl-local, parsl-polaris, globus-compute or globus-compute-local")
    site: str | None = Field(None, description="Name results record as worker_info.site (default: the pool's name)")
    max_in_flight: PositiveInt = Field(8, description="Tasks submitted to the executor at once; the others wait, reorderable")
    workers: PositiveInt = Field(1, description="parsl-local, globus-compute-local: workers on this node")
    worker_init: str = Field("", description="parsl-*: shell lines run before the workers start (activate the environment)")
    account: str | None = Field(None, description="parsl-polaris: PBS project to charge")
    queue: str | None = Field(None, description="parsl-polaris: PBS queue")
    nodes: PositiveInt = Field(1, description="parsl-polaris: nodes of the block")
    walltime: str = Field("01:00:00", description="parsl-polaris: walltime of the block")
    filesystems: str = Field("home:eagle", description="parsl-polaris: PBS filesystems resource")
    interface: str = Field("bond0", description="parsl-polaris: network interface the interchange binds")
    gpus_per_node: PositiveInt = Field(4, description="parsl-polaris: workers per node, one pinned to each GPU")
    endpoint_id: str | None = Field(None, description="globus-compute: the endpoint's UUID")

    @model_validator(mode="after")
    def _kind_has_its_settings(self) -> ExecutorSpec:
        if self.executor == "parsl-polaris" and not (self.account and self.queue):
            raise ValueError("parsl-polaris needs account and queue")
        if self.executor == "globus-compute" and not self.endpoint_id:
            raise ValueError("globus-compute needs endpoint_id (the UUID `globus-compute-endpoint list` shows)")
        return self

    def start(self, name: str, run_dir: Path) -> Executor:
        """Start the executor; Parsl writes its logs under ``run_dir/parsl/<name>``."""
        from dragon_campaign.bridges import globus_compute

        if self.executor == "globus-compute":
            return globus_compute.globus_compute_executor(self.endpoint_id or "")
        from parsl.concurrent import ParslPoolExecutor

        from dragon_campaign.bridges.parsl_configs import local_htex, polaris_htex

        parsl_dir = str(run_dir / "parsl" / name)
        if self.executor == "parsl-polaris":
            config = polaris_htex(parsl_dir, self.account or "", self.queue or "", nodes=self.nodes, walltime=self.walltime,
                                  worker_init=self.worker_init, filesystems=self.filesystems, interface=self.interface,
                                  gpus_per_node=self.gpus_per_node, label=name)
        else:
            config = local_htex(parsl_dir, workers=self.workers, worker_init=self.worker_init, label=name)
        engine = ParslPoolExecutor(config)
        return globus_compute.LocalComputeExecutor(engine) if self.executor == "globus-compute-local" else engine


@contextmanager
def executor_pools(specs: dict[str, ExecutorSpec], run_dir: Path) -> Iterator[dict[str, ExecutorPool]]:
    """Start one executor per spec; yields the pools by name and shuts every executor down on exit."""
    with ExitStack() as stack:
        pools = {}
        for name, spec in specs.items():
            executor = spec.start(name, run_dir)
            stack.callback(executor.shutdown)
            pools[name] = ExecutorPool(executor, site=spec.site or name, max_in_flight=spec.max_in_flight)
        yield pools
