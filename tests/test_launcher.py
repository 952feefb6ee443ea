"""launchers/run_campaign.py: options, configuration errors, and a real default-app run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).resolve().parent.parent / "launchers" / "run_campaign.py"


@pytest.fixture(scope="module")
def launcher():
    spec = importlib.util.spec_from_file_location("run_campaign", LAUNCHER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the config model's annotations through it
    spec.loader.exec_module(module)
    return module


def test_help_documents_every_option(launcher, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launcher.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--app", "--config", "--run-dir", "--workers", "--log-level", "--dry-run", "--help-app"):
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
    ],
)
def test_config_errors_name_file_and_key(launcher, capsys, tmp_path, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert launcher.main(["--config", str(config), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and message in err


def test_missing_config_file(launcher, capsys, tmp_path):
    assert launcher.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no such configuration file" in capsys.readouterr().err


def test_default_app_runs_end_to_end(launcher, capsys, tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text("app:\n  budget: 12\n  retrain_every: 6\n  ensemble: 2\n  epochs: 5\n  space_limit: 1500\n  chunk_size: 500\n")
    run_dir = tmp_path / "run"
    assert launcher.main(["--config", str(config), "--run-dir", str(run_dir), "--workers", "2"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["app"] == "moldesign" and summary["simulations"] == 12 and summary["failed"] == 0
    methods = [json.loads(line)["method"] for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert methods.count("simulate") == 12 and methods.count("train") == 2 * summary["retrainings"] > 0
    log = (run_dir / "campaign.log").read_text()
    assert "best IP so far" in log and "Model v0 trained" in log, "the thinker's log lines must reach campaign.log"
    assert (run_dir / "config.yaml").exists()


def test_producer_consumer_launcher_has_the_study_flags(capsys):
    spec = importlib.util.spec_from_file_location("producer_consumer", LAUNCHER.parent / "producer_consumer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    config, run_dir = module.parse_args(["--data_path", "files", "--num_sims", "3", "--kernel_sizes", "3", "7",
                                         "--sim_sleep", "0", "--run-dir", "x"])
    assert (config.data_path, config.num_sims, config.kernel_sizes, config.sim_sleep, str(run_dir)) == ("files", 3, [3, 7], 0.0, "x")
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--num_sims", "--grid_size", "--num_steps", "--sim_sleep", "--kernel_sizes", "--num_trainers", "--data_path"):
        assert flag in text
    with pytest.raises(SystemExit):
        module.parse_args(["--data_path", "carrier-pigeon"])
