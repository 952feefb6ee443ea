"""launchers/run_campaign.py: options, configuration errors, and a real default-app run."""

from __future__ import annotations

import json

import pytest
from conftest import load_launcher


@pytest.fixture(scope="module")
def launcher():
    return load_launcher()


def test_help_documents_every_option(launcher, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launcher.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--app", "--config", "--run-dir", "--workers", "--log-level", "--progress-interval", "--dry-run", "--help-app"):
        assert option in text


def test_dry_run_prints_plan_without_running(launcher, capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("pools:\n  cpu: {workers: 3}\napp:\n  budget: 5\n")
    assert launcher.main(["--config", str(config), "--dry-run", "--run-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "workers: 3" in out and "budget: 5" in out
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pools:\n  cpu: {wrkers: 3}\n", "pools.cpu.wrkers: unknown key"),
        ("pools:\n  cpu: {workers: 0}\n", "pools.cpu.workers: Input should be greater than 0"),
        ("app:\n  budget: many\n", "app.budget: Input should be a valid integer"),
        ("app:\n  bugdet: 3\n", "app.bugdet: unknown key"),
        ("app:\n  policy: greedy\n", "app.policy: Input should be 'random', 'batch', 'streaming' or 'interleaved'"),
        ("app:\n  budget: 50\n  space_limit: 10\n", "budget (50 simulations) exceeds the search space (10 molecules)"),
        ("colour: blue\n", "colour: unknown key"),
        ("pools: [1, 2\n", "not valid YAML"),
        ("pools:\n  r: {executor: slurm}\n", "pools.r.executor: Input should be 'parsl-local', 'parsl-polaris', 'globus-compute'"),
        ("pools:\n  r: {executor: parsl-local, wrkers: 2}\n", "pools.r.wrkers: unknown key"),
        ("pools:\n  r: {executor: parsl-polaris, queue: debug}\n", "parsl-polaris needs account and queue"),
        ("pools:\n  r: {executor: globus-compute}\n", "globus-compute needs endpoint_id"),
        ("proxystore:\n  backends: {train: carrier-pigeon}\n", "proxystore.backends.train: Input should be 'none', 'ddict'"),
        ("proxystore:\n  backends: {train: file}\n", "the file backend needs file_dir"),
    ],
)
def test_config_errors_name_file_and_key(launcher, capsys, tmp_path, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert launcher.main(["--config", str(config), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and message in err


def test_proxystore_settings_need_an_app_that_takes_them(launcher, capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("proxystore:\n  backends: {simulate: file}\n  file_dir: /tmp\n")
    assert launcher.main(["--app", "wave", "--config", str(config), "--dry-run"]) == 2
    assert "the wave app does not take per-topic ProxyStore settings" in capsys.readouterr().err


def test_dry_run_shows_executor_pools_and_no_secret(launcher, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_FOR_TEST", "hunter2")
    config = tmp_path / "c.yaml"
    config.write_text("pools:\n  cpu: {workers: 2}\n  remote: {executor: parsl-polaris, account: PROJ, queue: debug}\n"
                      "proxystore:\n  backends: {train: redis}\n  redis_password_env: SECRET_FOR_TEST\n")
    assert launcher.main(["--config", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "executor: parsl-polaris" in out and "account: PROJ" in out and "redis_password_env: SECRET_FOR_TEST" in out
    assert "hunter2" not in out


def test_missing_config_file(launcher, capsys, tmp_path):
    assert launcher.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no such configuration file" in capsys.readouterr().err


def test_default_app_runs_end_to_end(launcher, capsys, tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text("app:\n  budget: 12\n  retrain_every: 6\n  ensemble: 2\n  epochs: 5\n  space_limit: 1500\n  chunk_size: 500\n")
    run_dir = tmp_path / "run"
    assert launcher.main(["--config", str(config), "--run-dir", str(run_dir), "--workers", "2", "--progress-interval", "1"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["app"] == "moldesign" and summary["simulations"] == 12 and summary["failed"] == 0
    methods = [json.loads(line)["method"] for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert methods.count("simulate") == 12 and summary["retrainings"] > 0
    assert 2 * summary["retrainings"] <= methods.count("train") <= 2 * (summary["retrainings"] + summary["unused_trainings"])
    log = (run_dir / "campaign.log").read_text()
    assert "best IP so far" in log and "Model v0 trained" in log, "the thinker's log lines must reach campaign.log"
    assert "progress: simulate " in log and "workers busy: cpu " in log
    assert (run_dir / "config.yaml").exists() and (run_dir / "utilization.png").exists() and (run_dir / "report.html").exists()
    assert set(summary["worker_busy_fraction"]) == set(summary["worker_idle_while_tasks_wait"]) and len(summary["worker_busy_fraction"]) >= 2
    assert summary["wall_s"] > summary["setup_s"] > 0
    assert {"simulate", "train", "infer"} <= {row.split(",")[1] for row in (run_dir / "utilization.csv").read_text().splitlines()[1:]}


@pytest.mark.parametrize(("executor", "backend"), [("parsl-local", "redis"), ("globus-compute-local", "file")])
def test_training_at_another_site(launcher, tmp_path, redis_port, executor, backend):
    """moldesign with train on an executor pool started by the launcher; weights return through ProxyStore."""
    from conftest import PASSWORD_ENV

    config = tmp_path / "remote.yaml"
    config.write_text(f"pools:\n  cpu: {{workers: 2}}\n  gpu: {{gpus: true}}\n  remote: {{executor: {executor}}}\n"
                      f"proxystore:\n  backends: {{train: {backend}}}\n  threshold: 1000\n  file_dir: {tmp_path / 'shared'}\n"
                      f"  redis_port: {redis_port}\n  redis_password_env: {PASSWORD_ENV}\n"
                      "app:\n  budget: 12\n  retrain_every: 6\n  ensemble: 2\n  epochs: 5\n  space_limit: 1500\n"
                      "  chunk_size: 500\n  train_pool: remote\n")
    run_dir = tmp_path / "run"
    assert launcher.main(["--config", str(config), "--run-dir", str(run_dir)]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["simulations"] == 12 and summary["failed"] == 0 and summary["retrainings"] > 0
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    trained = [r for r in results if r["method"] == "train"]
    assert 2 * summary["retrainings"] <= len(trained) <= 2 * (summary["retrainings"] + summary["unused_trainings"])
    for result in trained:
        assert result["success"] and (result["worker_info"]["backend"], result["worker_info"]["site"]) == ("executor", "remote")
        assert result["value"].startswith("<proxy "), "the weights exceed the threshold: they come back as a proxy"
    assert {r["worker_info"]["backend"] for r in results if r["method"] != "train"} == {"dragon"}
    assert any((run_dir / "parsl" / "remote").rglob("manager.log")), "Parsl's logs go to the run directory"
    assert not (tmp_path / "shared").exists() or not any((tmp_path / "shared").iterdir()), "the file store is cleared at close"


def test_producer_consumer_launcher_has_the_study_flags(capsys):
    from dragon_campaign.cli import producer_consumer as module

    config, run_dir, interval = module.parse_args(["--data_path", "files", "--num_sims", "3", "--kernel_sizes", "3", "7",
                                                   "--sim_sleep", "0", "--run-dir", "x", "--progress-interval", "2"])
    assert (config.data_path, config.num_sims, config.kernel_sizes, config.sim_sleep, str(run_dir), interval) == ("files", 3, [3, 7], 0.0, "x", 2.0)
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--num_sims", "--grid_size", "--num_steps", "--sim_sleep", "--kernel_sizes", "--num_trainers", "--data_path"):
        assert flag in text
    with pytest.raises(SystemExit):
        module.parse_args(["--data_path", "carrier-pigeon"])
