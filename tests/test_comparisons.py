"""The benchmark scripts run end to end (tiny sizes, in a fresh runtime) and write complete reports."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_script(script: str, *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGON_")}  # its own runtime
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    completed = subprocess.run(["dragon", str(ROOT / "comparisons" / script), *args], env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def test_transfer_bandwidth_reports_every_path(tmp_path):
    run_script("transfer_bandwidth.py", "--sizes", "1", "--repeats", "1", "--output", str(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "transfer_bandwidth.csv")))
    paths = {row["path"] for row in rows}
    assert paths == {
        "memcpy (one process)", "pickled pipe", "np.save / np.load", "ProxyStore + FileConnector",
        "ProxyStore + RedisConnector", "ddict_store", "ddict_store, by reference", "ddict_store, zero-copy view",
        "ddict_store, reused out= buffer",
        "ProxyStore + DDictConnector", "plain DDict",
    }
    assert all(float(row["read_gbps"]) > 0 for row in rows)
    report = (tmp_path / "transfer_bandwidth.md").read_text()
    assert "- Machine:" in report and "- Command: `dragon" in report


def test_dispatch_overhead_measures_both_systems(tmp_path):
    run_script("dispatch_overhead.py", "--workers", "2", "--latency-tasks", "20", "--throughput-tasks", "200",
               "--repeats", "1", "--output", str(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "dispatch_overhead.csv")))
    assert [row["system"] for row in rows] == ["dragon_campaign (Dragon pools)", "Colmena 0.7.2 + Parsl HTEX"]
    assert all(float(row["throughput_tasks_per_s"]) > 0 for row in rows)


def test_steering_policies_compares_every_policy(tmp_path):
    run_script("steering_policies.py", "--budget", "8", "--seeds", "0", "--retrain_every", "4", "--batch_size", "4",
               "--space_limit", "400", "--output", str(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "steering_policies.csv")))
    assert [row["policy"] for row in rows] == ["random", "batch", "streaming", "interleaved"]
    assert all(int(row["simulations"]) + int(row["failed"]) == 8 for row in rows)
    assert all(int(row["retrainings"]) >= 1 for row in rows if row["policy"] != "random")
    report = (tmp_path / "steering_policies.md").read_text()
    assert "- Machine:" in report and "| interleaved |" in report and "Target (ML-steered search" in report
