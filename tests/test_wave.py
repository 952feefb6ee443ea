"""Producer-consumer workflow: every data path, at a tiny size, delivers every sample to every trainer."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from dragon_campaign import RunDirectory
from dragon_campaign.apps import wave
from dragon_campaign.apps.wave.simulation import data_bytes, simulate
from dragon_campaign.apps.wave.training import train_epoch
from dragon_campaign.apps.wave.workflow import CSV_FIELDS, expected_account


def test_simulation_is_deterministic_and_shaped():
    inputs, outputs = simulate(2, grid_size=16, num_steps=5)
    assert inputs.shape == outputs.shape == (5, 1, 16, 16) and inputs.dtype == np.float32
    assert np.array_equal(outputs[:-1], inputs[1:]), "each output is the next step's input"
    again, _ = simulate(2, grid_size=16, num_steps=5)
    assert np.array_equal(inputs, again)
    assert not np.array_equal(inputs, simulate(3, grid_size=16, num_steps=5)[0])
    assert data_bytes(3, 16, 5) == 3 * 2 * 5 * 16 * 16 * 4


def test_training_loss_falls():
    datasets = [simulate(i, grid_size=16, num_steps=40) for i in range(4)]
    report = train_epoch(datasets * 3, kernel_size=3)
    assert report.samples == 480 and report.last_loss < report.first_loss


@pytest.mark.parametrize("data_path", ["futures", "files", "ddict", "proxystore", "ray"])
def test_every_trainer_sees_every_sample(data_path, tmp_path):
    config = wave.Config(num_sims=3, grid_size=64, num_steps=5, sim_sleep=0.0, kernel_sizes=[3, 5], data_path=data_path,
                         proxy_threshold=1000)  # 160 KB per simulation: store buffers, and proxies on that path
    run_dir = RunDirectory(tmp_path / data_path)
    summary = wave.run(config, {}, run_dir)
    samples, checksum = expected_account(config)
    assert len(summary["trainers"]) == 2
    for trainer in summary["trainers"]:
        assert (trainer["samples"], trainer["checksum"]) == (samples, checksum) == (15, checksum)
    [row] = list(csv.DictReader(open(run_dir.path / "producer_consumer.csv")))
    assert list(row) == CSV_FIELDS and all(row[field] != "" for field in CSV_FIELDS)
    assert row["all_samples_seen"] == "True" and row["implementation"] == data_path
    io_columns = [row["sim_io_s"], row["train_io_s"]]
    if data_path == "futures":
        assert io_columns == ["NA", "NA"]
    else:
        assert all(float(value) >= 0 for value in io_columns)
    assert float(row["sim_run_s"]) > 0 and float(row["train_run_s"]) > 0
    assert float(row["train_cpu_tasks_s"]) > 0, "the trainers' CPU time is seen on every path"
    assert all(float(row[f"train_cpu_{group}_s"]) >= 0 for group in ("services", "runtime"))


@pytest.mark.parametrize("data_path", ["ddict", "proxystore"])
def test_resume_reuses_what_earlier_jobs_finished(data_path, tmp_path):
    """A resumed run takes finished simulations from their kept arrays and finished trainers from the journal;
    a simulation whose arrays were not kept runs again. (A job killed midway: tests/faults/test_hard_kill.py.)
    """
    config = wave.Config(num_sims=3, grid_size=32, num_steps=4, sim_sleep=0.0, kernel_sizes=[3, 5], data_path=data_path,
                         proxy_threshold=1000)
    run_dir = RunDirectory(tmp_path / data_path)
    first = wave.run(config, {}, run_dir)
    assert first["kept_tasks"] == 0 and sorted(p.name for p in (run_dir.path / "data").iterdir()) == ["sim0.npz", "sim1.npz", "sim2.npz"]
    again = wave.run(config, {}, run_dir, resume=True)
    assert again["kept_tasks"] == 5 and again["all_samples_seen"], "nothing ran again"
    assert again["trainers"] == first["trainers"]
    (run_dir.path / "data" / "sim1.npz").unlink()  # its arrays lost: it simulates again (the trainers, finished, are not run again)
    lines = (run_dir.path / "results.jsonl").read_text().count('"topic":"simulate"')
    third = wave.run(config, {}, run_dir, resume=True)
    assert third["kept_tasks"] == 2 + 2 and third["all_samples_seen"]
    assert (run_dir.path / "results.jsonl").read_text().count('"topic":"simulate"') == lines + 1


def test_paths_outside_the_task_server_refuse_to_resume(tmp_path):
    config = wave.Config(num_sims=1, grid_size=8, num_steps=2, data_path="ray")
    with pytest.raises(ValueError, match="data_path ray cannot resume: its tasks run on Ray"):
        wave.run(config, {}, RunDirectory(tmp_path), resume=True)
