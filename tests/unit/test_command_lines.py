"""The command lines answer before any runtime starts: help, the application's parameters, the plan and
every configuration error come back without importing Dragon; a written config.yaml reads back as the same
plan. (That a run's own config.yaml reproduces it is in tests/test_cli.py, under the runtime.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from common import outside_runtime_env

from dragon_campaign.apps import Application, installed
from dragon_campaign.cli.plan import resolve
from dragon_campaign.runs import ConfigError

ROOT = Path(__file__).resolve().parents[2]
# Runs a launcher as `python launchers/X.py ARGS` would, then says whether Dragon was imported
PROBE = """
import runpy, sys
script, *args = sys.argv[1:]
sys.argv = [script, *args]
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exc:
    code = exc.code
dragon = sorted(m for m in sys.modules if m == "dragon" or m.startswith("dragon."))
print("dragon modules:", dragon, file=sys.stderr)
sys.exit(code)
"""


def launch(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The launcher outside any runtime (the DRAGON_* variables of this suite's runtime removed)."""
    env = outside_runtime_env()
    return subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "launchers" / script), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "status", "expected"), [
    (["--help"], 0, "--help-app"),
    (["--help-app"], 0, "policy                 default 'interleaved' Steering policy [one of: random, batch, streaming, interleaved]"),
    (["--app", "ackley", "--help-app"], 0, "An example to start from: launchers/configs/ackley.yaml"),
    (["--config", "launchers/configs/ackley.yaml", "--help-app"], 0, "Parameters of the ackley app"),
    (["--dry-run"], 0, "name: moldesign"),
    (["--config", "launchers/configs/ackley.yaml", "--dry-run"], 0, "name: ackley"),
    (["--app", "ackley"], 2, "Start from launchers/configs/ackley.yaml"),
    (["--app", "wave", "--config", "launchers/configs/ackley.yaml"], 2, "--app wave, but launchers/configs/ackley.yaml configures the ackley app"),
    (["--config", "no/such.yaml"], 2, "no/such.yaml: no such configuration file"),
    (["--progress-interval", "-3"], 2, "--progress-interval: must be 0 or more, got -3"),
    (["--workers", "0"], 2, "--workers: must be at least 1, got 0"),
    (["--stop-after", "0"], 2, "--stop-after: must be positive, got 0"),
    (["--app", "wave", "--stop-after", "60"], 2, "the wave app cannot be checkpointed"),
])
def test_run_campaign_answers_without_starting_dragon(args, status, expected):
    done = launch("run_campaign.py", *args)
    assert done.returncode == status, done.stderr
    assert expected in done.stdout + done.stderr
    assert "dragon modules: []" in done.stderr, "the command imported Dragon"
    assert "head proc exited" not in done.stdout + done.stderr, "the command started a runtime"


@pytest.mark.parametrize(("args", "status", "expected"), [
    (["--help"], 0, "--kernel_sizes"),
    (["--data_path", "carrier-pigeon"], 2, "invalid choice: 'carrier-pigeon'"),
    (["--data_path", "files", "--sim_ranks", "2"], 2, "sim_ranks > 1 needs data_path proxystore"),
    (["--num_sims", "0"], 2, "--num_sims: Input should be greater than or equal to 1"),
])
def test_producer_consumer_answers_without_starting_dragon(args, status, expected):
    done = launch("producer_consumer.py", *args)
    assert done.returncode == status, done.stderr
    assert expected in done.stdout + done.stderr
    assert "dragon modules: []" in done.stderr
    assert "(default: None)" not in done.stdout


@pytest.mark.parametrize("config_file", ["launchers/configs/ackley.yaml", "launchers/configs/moldesign-polaris.yaml",
                                         "launchers/configs/moldesign-multisite.yaml", None])
def test_a_written_configuration_reads_back_as_the_same_plan(tmp_path, config_file):
    if config_file is not None and "multisite" in config_file:
        pytest.importorskip("globus_compute_sdk")
    plan = resolve(app=None, config_file=ROOT / config_file if config_file else None, run_dir=None, workers=None, resume=None)
    plan.write(tmp_path, "bash run.sh")
    again = resolve(app=None, config_file=tmp_path / "config.yaml", run_dir=tmp_path / "new", workers=None, resume=None)
    assert again.config() == plan.config()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["app"]["name"] == plan.name


def test_a_run_checkpointed_by_an_earlier_version_resumes(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "campaign.pkl").write_bytes(b"")
    (run / "config.yaml").write_text("app: moldesign\npools: {cpu: {workers: 3}}\nproxystore: null\napp_config: {budget: 7}\nrun_dir: x\n")
    plan = resolve(app=None, config_file=None, run_dir=None, workers=None, resume=run)
    assert (plan.name, plan.app_config.budget, plan.pools["cpu"].workers, plan.run_dir) == ("moldesign", 7, 3, run)


BUILT_IN = ("ackley", "moldesign", "streaming", "wave")


@pytest.mark.parametrize("name", BUILT_IN)
def test_the_registry_says_what_each_run_takes(name):
    import inspect

    application = installed()[name]
    assert isinstance(application, Application), application
    parameters = inspect.signature(application.runner()).parameters
    assert application.checkpoints == ("resume" in parameters and "stop_after" in parameters)
    assert application.proxystore == ("proxystore" in parameters)


def test_every_configuration_error_comes_at_once_with_the_key_that_was_meant(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("rundir: x\npools: {cpu: {workerz: 2}}\napp: {budgett: 3}\n")
    completed = launch("run_campaign.py", "--config", str(config), "--set", "app.policy=bogus", "--dry-run")
    assert completed.returncode == 2
    said = completed.stderr
    for expected in ("rundir: unknown key (did you mean 'run_dir'?)", "pools.cpu.workerz: unknown key (did you mean 'workers'?)",
                     "app.budgett: unknown key (did you mean 'budget'?)", "app.policy: Input should be"):
        assert expected in said, said
    assert "dragon modules: []" in said


def test_set_overrides_the_file_and_is_validated_like_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("app: {budget: 3}\n")
    plan = resolve(app=None, config_file=config, run_dir=None, workers=None, resume=None,
                   overrides=["app.budget=9", "app.policy=batch", "pools.cpu.workers=2", "pools.gpu.gpus=true"])
    assert (plan.app_config.budget, plan.app_config.policy, plan.pools["cpu"].workers, plan.pools["gpu"].gpus) == (9, "batch", 2, True)
    for bad, message in (("app.budget", "expected KEY=VALUE"), ("app.budget=[1", "not valid YAML"), ("app.budget=-1", "app.budget"),
                         ("app.budget.x=1", "not a section")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            resolve(app=None, config_file=config, run_dir=None, workers=None, resume=None, overrides=[bad])


def test_an_unknown_app_is_named_with_what_is_installed():
    with pytest.raises(ConfigError, match=r"unknown application 'moldesing' \(did you mean 'moldesign'\?\) \(installed: .*ackley"):
        resolve(app="moldesing", config_file=None, run_dir=None, workers=None, resume=None)


def test_version_and_the_app_list_answer_without_dragon():
    env = outside_runtime_env()
    command = str(Path(sys.executable).parent / "dragon-campaign")
    version = subprocess.run([command, "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("dragon-campaign 0.") and "dragonhpc" in version.stdout
    apps = subprocess.run([command, "apps"], env=env, capture_output=True, text=True, timeout=60)
    assert apps.returncode == 0
    listed = {line.split()[0] for line in apps.stdout.splitlines() if line and not line.startswith("Run one")}
    assert set(BUILT_IN) <= listed


def test_a_campaign_file_is_planned_with_its_config_and_pools(tmp_path):
    campaign = tmp_path / "mine.py"
    campaign.write_text(
        "from pydantic import BaseModel, ConfigDict\n"
        "from dragon_campaign import WorkerPool\n"
        "class Config(BaseModel):\n    model_config = ConfigDict(extra='forbid')\n    n: int = 4\n"
        "def default_pools(config):\n    return {'cpu': WorkerPool(workers=config.n)}\n"
        "def build(run):\n    raise AssertionError('not called before the runtime')\n")
    plan = resolve(app=None, config_file=None, run_dir=None, workers=None, resume=None, campaign=f"{campaign}:build",
                   overrides=["app.n=3"])
    assert (plan.name, plan.app_config.n, plan.pools["cpu"].workers) == (f"{campaign}:build", 3, 3)
    plan.write(tmp_path, "dragon-campaign run")
    again = resolve(app=None, config_file=tmp_path / "config.yaml", run_dir=tmp_path / "new", workers=None, resume=None)
    assert again.config() == plan.config() and again.name == plan.name
    with pytest.raises(ConfigError, match=r"app.m: unknown key"):
        resolve(app=None, config_file=None, run_dir=None, workers=None, resume=None, campaign=str(campaign), overrides=["app.m=1"])
    with pytest.raises(ConfigError, match="no such file"):
        resolve(app=None, config_file=None, run_dir=None, workers=None, resume=None, campaign=str(tmp_path / "absent.py"))
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_anywhere\n")
    with pytest.raises(ConfigError, match="importing .* failed: ModuleNotFoundError"):
        resolve(app=None, config_file=None, run_dir=None, workers=None, resume=None, campaign=str(broken))
