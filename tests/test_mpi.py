"""MPI methods under the real runtime: ranks started with mpiexec (the mpich wheel) by a Dragon worker;
the result carries rank 0's value and the rank count; the wave simulation decomposed over 2 ranks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tasks

from dragon_campaign import WorkerPool, read_results
from dragon_campaign.apps.wave import Config, run
from dragon_campaign.apps.wave.mpi_simulation import simulate_decomposed
from dragon_campaign.apps.wave.simulation import simulate
from dragon_campaign.mpi import MPIMethod


def test_result_carries_rank_zero_value_and_rank_count(serve, run_dir):
    queues, server = serve([MPIMethod(tasks.mpi_ranks_report), tasks.noop], mpi=WorkerPool(workers=1))
    default = queues.send_inputs("default", method="mpi_ranks_report")
    asked = queues.send_inputs("asked", method="mpi_ranks_report", resources={"cpu_processes": 3})
    results = {r.task_id: r for r in (queues.get_result(timeout=120) for _ in range(2))}
    assert results[default].success and results[asked].success, [r.failure_info for r in results.values()]
    assert results[default].value == {"tag": "default", "size": 2, "rank_sum": 1, "hosts": [results[default].worker_info.hostname] * 2}
    assert (results[default].mpi_ranks, results[asked].mpi_ranks) == (2, 3)
    assert results[asked].value["rank_sum"] == 0 + 1 + 2
    queues.send_inputs(5, method="noop")
    assert queues.get_result(timeout=60).mpi_ranks is None, "plain methods have no rank count"
    server.stop(timeout=60)
    logged = {r.task_id: r for r in read_results(run_dir / "results.jsonl")}
    assert logged[asked].mpi_ranks == 3


def test_a_rank_that_raises_fails_the_task_instead_of_hanging(serve):
    queues, _ = serve([MPIMethod(tasks.mpi_fail_on_rank, timeout=120)], mpi=WorkerPool(workers=1))
    queues.send_inputs(1, method="mpi_fail_on_rank")
    result = queues.get_result(timeout=180)
    assert not result.success and result.mpi_ranks == 2
    assert "rank 1 raised ValueError('rank 1 cannot go on')" in result.failure_info.exception
    assert "Traceback of rank 1" in result.failure_info.traceback and "in mpi_fail_on_rank" in result.failure_info.traceback
    queues.send_inputs(0, method="mpi_fail_on_rank")  # the worker survives and runs the next one
    assert "rank 0 raised" in queues.get_result(timeout=180).failure_info.exception


def test_mpiexec_cannot_span_nodes(serve):
    queues, _ = serve([MPIMethod(tasks.mpi_ranks_report)], mpi=WorkerPool(workers=1))
    queues.send_inputs("x", method="mpi_ranks_report", resources={"node_count": 2, "cpu_processes": 1})
    result = queues.get_result(timeout=60)
    assert not result.success and "need launcher='dragon'" in result.failure_info.exception


@pytest.mark.parametrize("ranks", [2, 3])
def test_decomposed_wave_is_byte_identical_to_one_process(ranks):
    decomposed = MPIMethod(simulate_decomposed, ranks=ranks)(3, 40, 6)
    for parallel, serial in zip(decomposed, simulate(3, 40, 6), strict=True):
        assert parallel.dtype == serial.dtype and parallel.shape == serial.shape
        assert parallel.tobytes() == serial.tobytes()


def test_wave_app_simulates_over_two_ranks_and_trains_on_every_sample(tmp_path):
    from dragon_campaign import RunDirectory

    config = Config(num_sims=2, grid_size=32, num_steps=4, sim_sleep=0.0, kernel_sizes=[3], data_path="proxystore",
                    sim_ranks=2, proxy_threshold=1000, channels=4)
    run_dir = RunDirectory(tmp_path / "run")
    summary = run(config, {"cpu": WorkerPool(workers=1), "gpu": WorkerPool(gpus=True, cpu_fallback_workers=1)}, run_dir)
    assert summary["all_samples_seen"] is True
    sims = [r for r in read_results(run_dir.results_path) if r.method == "simulate_arrays"]
    assert len(sims) == 2 and all(r.success and r.mpi_ranks == 2 for r in sims)
    assert all(str(r.value).startswith("<proxy ") for r in sims), "rank 0's arrays went through the DDict as proxies"
    with pytest.raises(ValueError, match="sim_ranks > 1 needs data_path proxystore"):
        Config(data_path="ddict", sim_ranks=2)
    assert json.loads(json.dumps(summary))["implementation"] == "proxystore"
    assert np.isfinite(summary["train_run_s"])
