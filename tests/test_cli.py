"""A run's own config.yaml reproduces it (the command lines' checks without a runtime: tests/unit)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import load_launcher


def test_a_runs_own_config_reproduces_it(tmp_path):
    """The streaming optimizer on one worker is deterministic: the rerun from config.yaml finds the same points."""
    config = tmp_path / "c.yaml"
    config.write_text("pools:\n  cpu: {workers: 1}\napp:\n  name: streaming\n  budget: 15\n  task_sleep: 0\n  seed: 7\n")
    first, second = tmp_path / "first", tmp_path / "second"
    launcher = load_launcher()
    assert launcher.main(["--config", str(config), "--run-dir", str(first), "--progress-interval", "0"]) == 0
    assert launcher.main(["--config", str(first / "config.yaml"), "--run-dir", str(second), "--progress-interval", "0"]) == 0

    def evaluations(run_dir: Path) -> list[tuple[list[float], float]]:
        records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
        return [(r["inputs"][0][0], r["value"]) for r in records]

    assert len(evaluations(first)) == 15
    assert evaluations(second) == evaluations(first)
    assert yaml.safe_load((second / "config.yaml").read_text()) == yaml.safe_load((first / "config.yaml").read_text())
