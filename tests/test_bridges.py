"""Methods routed to executors at other sites: the same thinker runs with every method on Dragon, with
``train`` on a local Parsl HTEX executor, and with ``train`` on an executor with Globus Compute's
interface. Globus Compute's cloud service cannot be reached from the test machines, so
:class:`LocalComputeExecutor` stands in for it: the SDK's own serializer packs the function, its
arguments and its result, and a local engine runs the packed tasks (threads here, to keep the tests
quick; a Parsl HTEX in test_launcher and the multi-site comparison). (A ``ProcessPoolExecutor`` cannot
start under the Dragon runtime: its spawned children inherit the "dragon" start method without Dragon.)"""

from __future__ import annotations

import os
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import pytest
import tasks
from proxystore.connectors.file import FileConnector
from proxystore.proxy import Proxy
from proxystore.store import Store

from dragon_campaign import BaseThinker, DragonQueues, DragonTaskServer, ExecutorPool, Result, WorkerPool, agent
from dragon_campaign.bridges.globus_compute import LocalComputeExecutor
from dragon_campaign.campaign import run_campaign

HERE = Path(__file__).resolve().parent
SIMULATIONS = 6


class SimulateThenTrain(BaseThinker):
    """Never names a backend: where ``train`` runs is the task server's business."""

    def __init__(self, queues: DragonQueues, payload_bytes: int) -> None:
        super().__init__(queues)
        self.payload_bytes = payload_bytes
        self.trained: list[Result] = []

    @agent
    def pipeline(self) -> None:
        for i in range(SIMULATIONS):
            self.queues.send_inputs(float(i), 1.0, method="add", topic="simulate")
        for _ in range(SIMULATIONS):
            simulated = self.queues.get_result("simulate")
            self.queues.send_inputs(simulated.value, self.payload_bytes, method="train", topic="train")
        self.trained = [self.queues.get_result("train") for _ in range(SIMULATIONS)]


def run_pipeline(run_dir: Path, train_pool: WorkerPool | ExecutorPool, payload_bytes: int = 0,
                 queues: DragonQueues | None = None) -> SimulateThenTrain:
    queues = queues or DragonQueues(topics=["simulate", "train"])
    server = DragonTaskServer([tasks.add, (tasks.train, {"pool": "train"})], queues,
                              pools={"cpu": WorkerPool(workers=1), "train": train_pool}, run_dir=run_dir)
    thinker = SimulateThenTrain(queues, payload_bytes)
    run_campaign(thinker, server)
    return thinker


def check_trained(thinker: SimulateThenTrain, backend: str, site: str) -> None:
    assert sorted(r.value["value"] for r in thinker.trained) == [2 * (i + 1.0) for i in range(SIMULATIONS)]
    for result in thinker.trained:
        assert result.success and result.worker_info.backend == backend and result.worker_info.site == site
        assert result.worker_info.pool == "train" and result.worker_info.hostname
        assert result.time.running >= 0 and result.timestamp.compute_started >= result.timestamp.dispatched


def parsl_executor(run_dir: Path) -> Executor:
    from parsl.concurrent import ParslPoolExecutor

    from dragon_campaign.bridges.parsl_configs import local_htex

    return ParslPoolExecutor(local_htex(str(run_dir / "parsl"), workers=2, worker_init=f"export PYTHONPATH={HERE}:$PYTHONPATH"))


def globus_stand_in() -> Executor:
    return LocalComputeExecutor(ThreadPoolExecutor(max_workers=2))


def test_every_method_on_dragon(tmp_path):
    check_trained(run_pipeline(tmp_path / "run", WorkerPool(workers=1)), backend="dragon", site="local")


def test_train_on_a_parsl_htex_executor(tmp_path):
    executor = parsl_executor(tmp_path)
    try:
        thinker = run_pipeline(tmp_path / "run", ExecutorPool(executor, site="parsl-local", max_in_flight=2))
    finally:
        executor.shutdown()
    check_trained(thinker, backend="executor", site="parsl-local")
    assert {r.worker_info.pid for r in thinker.trained} - {os.getpid()}, "the tasks ran in Parsl's workers"


def test_train_on_an_executor_with_the_globus_compute_interface(tmp_path):
    with globus_stand_in() as executor:
        thinker = run_pipeline(tmp_path / "run", ExecutorPool(executor, site="globus-stand-in"))
    check_trained(thinker, backend="executor", site="globus-stand-in")


def test_large_remote_results_come_back_as_proxies(tmp_path):
    store = Store("bridge-files", FileConnector(str(tmp_path / "proxies")), register=True)
    try:
        queues = DragonQueues(topics=["simulate", "train"], proxystore_name={"train": store.name},
                              proxystore_threshold={"train": 10_000})
        with globus_stand_in() as executor:
            big = run_pipeline(tmp_path / "big", ExecutorPool(executor, site="remote"), payload_bytes=50_000, queues=queues)
        assert all(isinstance(r.value, Proxy) and len(r.value["payload"]) == 50_000 for r in big.trained)
        assert len(list((tmp_path / "proxies").iterdir())) >= SIMULATIONS  # the file store holds them
    finally:
        store.close()


def test_shutdown_fails_tasks_still_running_remotely(tmp_path):
    queues = DragonQueues(topics=["slow"])
    with globus_stand_in() as executor:
        server = DragonTaskServer([(tasks.sleep_then, {"pool": "remote"}), tasks.noop], queues,
                                  pools={"cpu": WorkerPool(workers=1), "remote": ExecutorPool(executor, site="remote")},
                                  run_dir=tmp_path / "run", shutdown_grace=0.5).start()
        queues.send_inputs("late", 3.0, method="sleep_then", topic="slow")
        queues.send_inputs(None, method="noop")
        assert queues.get_result().success  # the server runs; the remote task is sleeping
        server.stop(timeout=60)
        lost = queues.get_result("slow", timeout=10)
    assert not lost.success and "shut down while the task ran at site 'remote'" in lost.failure_info.exception


def test_executor_pool_checks_its_arguments():
    with pytest.raises(ValueError, match="max_in_flight"):
        ExecutorPool(ThreadPoolExecutor(1), site="x", max_in_flight=0)
    with pytest.raises(TypeError, match="no submit"):
        ExecutorPool(object(), site="x")  # type: ignore[arg-type]


def test_parsl_configurations_bind_one_address_and_encrypt():
    from dragon_campaign.bridges.parsl_configs import local_htex, polaris_htex

    local = local_htex("/tmp/unused", workers=3).executors[0]
    assert local.address == local.loopback_address == "127.0.0.1" and local.encrypted and local.max_workers_per_node == 3
    polaris = polaris_htex("/tmp/unused", account="MyProject", queue="debug", nodes=2, interface="lo").executors[0]
    assert polaris.address == "127.0.0.1" and polaris.encrypted  # the address of the interface named
    assert polaris.available_accelerators == ["0", "1", "2", "3"] and polaris.max_workers_per_node == 4
    assert polaris.provider.account == "MyProject" and polaris.provider.nodes_per_block == 2
    assert "filesystems=home:eagle" in polaris.provider.scheduler_options


def test_globus_stand_in_serializes_like_the_sdk_and_returns_exceptions():
    with globus_stand_in() as executor:
        assert executor.submit(divmod, 7, 2).result() == (3, 1)
        with pytest.raises(ValueError, match="invalid literal"):
            executor.submit(int, "seven").result()
