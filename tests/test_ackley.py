"""GPR-steered Ackley search: the function, configuration errors, and real campaigns under Dragon in which
pools join mid-run, reprioritization reorders execution, and cancelled tasks never run."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from test_launcher import launcher  # noqa: F401  (the fixture)

from dragon_campaign import RunDirectory, read_results
from dragon_campaign.apps import ackley
from dragon_campaign.apps.ackley.function import lognormal_parameters, run_time

# Tasks long enough, and a space large enough, that tasks still wait at every round and the last pool to
# join has work left even when its workers start slowly (a fresh virtual environment compiles on import).
POOLS = [{"name": "pool-1", "workers": 2}, {"name": "pool-2", "workers": 1, "join_after": 1},
         {"name": "pool-3", "workers": 1, "join_after": 2}]
SEARCH = {"pools": POOLS, "tasks": {"evaluate": ["pool-1", "pool-2", "pool-3"]}, "search_space_size": 200, "sample_dimensions": 4,
          "runtime": 0.3, "runtime_var": 0.005, "num_guesses": 72, "retrain_after": 12}


def test_ackley_and_run_times():
    assert ackley.ackley([0.0] * 4) == pytest.approx(0.0, abs=1e-12)
    assert ackley.ackley([1.0, 1.0]) == pytest.approx(3.6253849, abs=1e-6)
    assert ackley.ackley([20.0] * 6) > ackley.ackley([2.0] * 6) > 0
    mu, sigma = lognormal_parameters(0.5, 0.1)
    draws = np.random.default_rng(0).lognormal(mu, sigma, 200_000)
    assert draws.mean() == pytest.approx(0.5, rel=0.01) and draws.var() == pytest.approx(0.1, rel=0.05)
    assert run_time(0.3, 0.0, seed=1) == 0.3 and run_time(0.3, 0.01, seed=1) == run_time(0.3, 0.01, seed=1)
    with pytest.raises(ValueError, match="non-empty vector"):
        ackley.ackley([])


def write_config(tmp_path, app: dict) -> str:
    import yaml

    path = tmp_path / "ackley.yaml"
    path.write_text(yaml.safe_dump({"app": app}))
    return str(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"retrain_every": 5}, "app.retrain_every: unknown key"),
        ({"num_guesses": None}, "app.num_guesses: Field required"),
        ({"pools": [{"name": "pool-1", "workers": 2, "gpu": True}]}, "app.pools.0.gpu: unknown key"),
        ({"tasks": {"evaluate": ["pool-9"]}}, "tasks.evaluate names unknown pool(s) ['pool-9']"),
        ({"tasks": {"evaluate": ["pool-2"]}}, "tasks.evaluate must name a pool that starts with the run"),
        ({"reprioritize_endpoint": "elsewhere"}, "reprioritize_endpoint 'elsewhere' is neither 'local' nor a pool"),
        ({"num_guesses": 500}, "num_guesses (500) exceeds search_space_size (200)"),
    ],
)
def test_config_errors_name_file_and_key(launcher, capsys, tmp_path, change, message):  # noqa: F811
    app = {key: value for key, value in {**SEARCH, **change}.items() if value is not None}
    path = write_config(tmp_path, app)
    assert launcher.main(["--app", "ackley", "--config", path, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert path in err and message in err


def test_help_app_lists_required_keys(launcher, capsys):  # noqa: F811
    assert launcher.main(["--app", "ackley", "--help-app"]) == 0
    text = capsys.readouterr().out
    assert "num_guesses" in text and "required" in text and "default 'local'" in text
    missing = launcher.main(["--app", "ackley", "--dry-run"])  # no file: the required keys are missing
    assert missing == 2 and "app.search_space_size: Field required" in capsys.readouterr().err


def test_top_level_pools_are_refused(tmp_path):
    config = ackley.Config(**SEARCH)
    with pytest.raises(ValueError, match="declares its pools in app.pools"):
        ackley.run(config, {"cpu": ackley.PoolSpec(name="cpu", workers=2).worker_pool()}, RunDirectory(tmp_path / "run"))


def read_csv(path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(path)))


def test_reprioritized_search_with_pools_joining(tmp_path):
    config = ackley.Config(**SEARCH)
    run_dir = RunDirectory(tmp_path / "run")
    summary = ackley.run(config, ackley.default_pools(config), run_dir)

    # completions stop at num_guesses (plus tasks already running); everything else was cancelled and never ran
    evaluated = [r for r in read_results(run_dir.results_path) if r.method == "evaluate"]
    assert summary["completions"] == len(evaluated) >= config.num_guesses
    assert summary["completions"] + summary["cancelled"] == config.search_space_size
    assert len({r.task_info["index"] for r in evaluated}) == len(evaluated)

    # pools joining mid-run took tasks from the same queue, after their round
    per_pool = summary["completions_per_pool"]
    assert set(per_pool) == {"pool-1", "pool-2", "pool-3"} and all(count > 0 for count in per_pool.values())
    workers = [int(row["workers"]) for row in read_csv(run_dir.path / "workers.csv")]
    assert workers[0] == 2 and workers[-1] == 4 and workers == sorted(workers)

    # every round reprioritized, and after each one the tasks left the queue in the GPR's order
    rounds = read_csv(run_dir.path / "reprioritizations.csv")
    assert len(rounds) == summary["reprioritizations"] == (config.num_guesses - 1) // config.retrain_after
    progress = read_csv(run_dir.path / "progress.csv")
    points = config.sample_points()
    checked = 0
    assert int(rounds[0]["reordered"]) > 0
    for number, round_ in enumerate(rounds):
        assert 0 <= int(round_["reordered"]) <= int(round_["waiting"])
        start = float(round_["updated_at"])  # results that piled up during a slow fit can bring the next round at once
        end = float(rounds[number + 1]["updated_at"]) if number + 1 < len(rounds) else math.inf
        started = sorted((r for r in evaluated if start < r.timestamp.dispatched < end), key=lambda r: r.timestamp.dispatched)
        if len(started) < 2:
            continue
        done = progress[:int(round_["completions"])]  # the thinker's model of this round, fitted again
        model = ackley.fit_gpr(points[[int(r["index"]) for r in done]].tolist(), [float(r["value"]) for r in done], config.seed)
        predicted = model.predict(points[[r.task_info["index"] for r in started]])
        assert np.all(np.diff(predicted) >= -1e-9), f"round {number + 1}: tasks did not start in order of prediction"
        checked += len(started)
    assert checked >= config.retrain_after
    assert (run_dir.path / "best_vs_completions.png").stat().st_size > 0
    assert json.loads((run_dir.path / "summary.json").read_text())["best_value"] == summary["best_value"]


def test_gpr_fitted_on_a_pool_comes_back_as_a_proxy(tmp_path):
    pools = [{"name": "sim", "workers": 2}, {"name": "trainer", "workers": 1}]
    config = ackley.Config(**{**SEARCH, "pools": pools, "tasks": {"evaluate": ["sim"]}, "reprioritize_endpoint": "trainer",
                              "search_space_size": 40, "num_guesses": 30, "retrain_after": 10, "runtime": 0.05})
    run_dir = RunDirectory(tmp_path / "run")
    summary = ackley.run(config, ackley.default_pools(config), run_dir)
    assert summary["reprioritizations"] == 2 and summary["completions_per_pool"] == {"sim": summary["completions"]}
    fits = [r for r in read_results(run_dir.results_path) if r.method == "fit_gpr"]
    assert len(fits) == 2 and all(r.success and r.worker_info.pool == "trainer" and r.topic == "retrain" for r in fits)
    assert all(str(r.value).startswith("<proxy") for r in fits)  # the fitted GPR travelled through the store
    assert all(row["where"] == "trainer" for row in read_csv(run_dir.path / "reprioritizations.csv"))
