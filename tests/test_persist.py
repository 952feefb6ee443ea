"""Checkpoint a store in this runtime, restore it in a second, fresh Dragon runtime, and compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from common import outside_runtime_env
from digest import digest

from ddict_store import DDictStore, checkpoint, publish_model, restore

MB = 2**20
HERE = Path(__file__).resolve().parent


def test_checkpoint_restores_in_a_new_runtime(tmp_path):
    rng = np.random.default_rng(9)
    with DDictStore(inline_bytes=4096) as store:
        run = store.namespace("campaign", "run1")
        run.put("small", np.arange(10, dtype=np.int32))
        run.put("large", rng.random(3 * MB // 8))  # managed-memory buffer
        run.put("chunked", rng.random(MB // 8), placement="chunks")
        run.put("tensor", torch.rand(20, 5, dtype=torch.float64))
        run.put("zero_d", np.array(2.5))
        run.put("pair", {"inputs": rng.random((3, 5)), "outputs": np.arange(7, dtype=np.int16)})  # a dict of arrays
        run.put("settings", {"budget": 200, "policy": "interleaved"})
        for version in range(2):
            publish_model(run, "surrogate", {"w": torch.full((4, 4), float(version))})
        store.namespace("other-run").put("not-saved", 1)
        expected = {key: digest(store.get(key)) for key in store.keys() if key.startswith("campaign/")}
        where = checkpoint(store, tmp_path / "ckpt", namespaces=["campaign/run1"])
    assert (where / "manifest.json").exists() and not (tmp_path / "ckpt.partial").exists()

    env = outside_runtime_env()
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    completed = subprocess.run(
        ["dragon", str(HERE / "restore_checkpoint.py"), str(where)], env=env, capture_output=True, text=True, timeout=240
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["restored"] == len(expected)
    assert result["digests"] == expected
    assert result["latest_model"] == [1, digest(torch.full((4, 4), 1.0))]


def test_restore_reports_missing_or_truncated_checkpoints(tmp_path):
    with DDictStore() as store:
        with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
            restore(store, tmp_path)
        store.put("x", np.zeros(100))
        where = checkpoint(store, tmp_path / "c")
        (where / "0.bin").write_bytes(b"short")
        with pytest.raises(ValueError, match="truncated"):
            restore(store, where)
