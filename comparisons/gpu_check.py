"""GPU check: one pinned worker per GPU, each seeing its own GPU, with the wave trainers, the molecular-design
training and inference, and CUDA tensors read from the store. Run through ``bash comparisons/gpu_check.sh``
(on a node with NVIDIA GPUs; ``--allow-cpu`` runs the same checks on CPU workers, to keep the script working).

Checks, each printed with its figures, any failure makes the exit status 1:

1. Pinning: every worker of a ``WorkerPool(gpus=True)`` sees exactly one GPU, and no two workers see the same
   one (by the UUID torch reports), and there is one worker per GPU of the node.
2. CUDA tensors through the store: each worker puts a CUDA tensor into the store and through ProxyStore over
   the DDict, reads both back onto its GPU, and checks them (the read's rate is printed).
3. Molecular design: one ensemble member trained per GPU, then inference on a chunk of the search space on
   every GPU, reading the weights and features from the store.
4. Wave: the producer-consumer workflow (ddict path) with one trainer per GPU; every trainer must report
   the device ``cuda`` and have seen every sample.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from common import require_dragon_runtime, use_dragon_processes


def gpu_identity(pause: float) -> dict[str, Any]:
    """What this worker sees: its pid, CUDA_VISIBLE_DEVICES and the GPUs torch finds."""
    import torch

    time.sleep(pause)  # held a moment, so that every idle worker takes one of these tasks
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpus = [str(torch.cuda.get_device_properties(i).uuid) for i in range(count)]
    name = torch.cuda.get_device_name(0) if count else "cpu"
    return {"pid": os.getpid(), "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "gpus": gpus, "name": name}


def tensors_through_store(store_handle: str, proxy_store_config: Any, megabytes: int) -> dict[str, Any]:
    """Put a tensor made on this worker's GPU into the store and through ProxyStore; read both back there."""
    import torch
    from proxystore.proxy import resolve
    from proxystore.store import get_or_create_store
    from proxystore.store.utils import get_key

    from ddict_store import attached

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tensor = torch.arange(megabytes * 2**20 // 4, dtype=torch.float32, device=device) * 0.5
    namespace = attached(store_handle).namespace("gpu-check")
    key = f"tensor-{os.getpid()}"
    namespace.put(key, tensor)
    start = time.perf_counter()
    back = namespace.get(key, map_location=device)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    proxy_store = get_or_create_store(proxy_store_config)
    proxy = proxy_store.proxy(tensor)
    resolve(proxy)
    checked = {"pid": os.getpid(), "device": str(back.device), "store_ok": bool(torch.equal(back, tensor)),
               "proxy_device": str(proxy.device), "proxy_ok": bool(torch.equal(proxy.to(device), tensor)),
               "read_gbps": tensor.nbytes / seconds / 1e9}
    namespace.delete(key)
    proxy_store.evict(get_key(proxy))
    return checked


def train_member_here(smiles: list[str], targets: list[float], member: int, store_handle: str, namespace: str) -> dict[str, Any]:
    """The campaign's training task, plus where it ran."""
    from dragon_campaign.apps.moldesign import tasks

    start = time.perf_counter()
    summary = tasks.train(smiles, targets, member, version=0, seed=1, epochs=5, store_handle=store_handle, namespace=namespace)
    return {**summary, "seconds": time.perf_counter() - start, "device": tasks._device(), "pid": os.getpid()}


def infer_here(chunk: int, members: int, store_handle: str, namespace: str) -> dict[str, Any]:
    """The campaign's inference task, plus where it ran."""
    from dragon_campaign.apps.moldesign import tasks

    start = time.perf_counter()
    _, mean, spread = tasks.infer(chunk, members, 0, store_handle, namespace)
    return {"molecules": len(mean), "finite": bool(np.isfinite(mean).all() and np.isfinite(spread).all()),
            "seconds": time.perf_counter() - start, "device": tasks._device(), "pid": os.getpid()}


class Checks:
    """Collects pass/fail lines and prints them as they come."""

    def __init__(self) -> None:
        self.failed = 0

    def check(self, ok: bool, text: str) -> None:
        self.failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--allow-cpu", action="store_true", help="run on CPU workers where the node has no GPU")
    parser.add_argument("--tensor-mb", type=int, default=256, help="size of each worker's CUDA tensor")
    args = parser.parse_args()
    require_dragon_runtime("gpu_check.py")
    use_dragon_processes()
    from dragon.native.machine import Node, System
    from proxystore.store import unregister_store

    from ddict_store import DDictStore
    from ddict_store.connector import ddict_proxy_store
    from dragon_campaign import DragonQueues, DragonTaskServer, RunDirectory, WorkerPool
    from dragon_campaign.apps import wave
    from dragon_campaign.apps.moldesign import tasks as moldesign

    gpus = sum(Node(uid).num_gpus for uid in System().nodes)
    if gpus == 0 and not args.allow_cpu:
        sys.exit("gpu_check: Dragon finds no GPU on this node (pass --allow-cpu to run the checks on CPU workers)")
    workers = gpus or 2
    print(f"gpu_check: {gpus} GPU(s) on {System().nnodes} node(s); one pinned worker each" if gpus
          else "gpu_check: no GPU, --allow-cpu: 2 CPU workers stand in", flush=True)
    checks = Checks()
    pools = {"gpu": WorkerPool(gpus=True, cpu_fallback_workers=workers), "cpu": WorkerPool(workers=1)}
    smiles = files("dragon_campaign.apps.moldesign").joinpath("data/search_space.smi").read_text().split()[:512]
    with tempfile.TemporaryDirectory() as scratch, DDictStore(buffer_bytes_per_node=(args.tensor_mb * workers + 512) * 2**20) as store:
        proxy_store = ddict_proxy_store("gpu-check", store, register=True)
        queues = DragonQueues(topics=["gpu"])
        methods: list[Any] = [(gpu_identity, {"pool": "gpu"}), (tensors_through_store, {"pool": "gpu"}),
                              (train_member_here, {"pool": "gpu"}), (infer_here, {"pool": "gpu"}), (moldesign.featurize, {"pool": "cpu"})]
        with DragonTaskServer(methods, queues, pools=pools, run_dir=Path(scratch) / "run"):
            for _ in range(3 * workers):
                queues.send_inputs(1.0, method="gpu_identity", topic="gpu")
            seen = [queues.get_result("gpu", timeout=600).value for _ in range(3 * workers)]
            by_pid = {row["pid"]: row for row in seen}
            for row in by_pid.values():
                print(f"      worker {row['pid']}: CUDA_VISIBLE_DEVICES={row['visible']}, {row['name']}, {row['gpus']}")
            checks.check(len(by_pid) == workers, f"{len(by_pid)} distinct workers answered, {workers} expected")
            if gpus:
                checks.check(all(len(row["gpus"]) == 1 for row in seen), "every worker sees exactly one GPU")
                owners = {row["gpus"][0]: pid for pid, row in by_pid.items() if row["gpus"]}
                checks.check(len(owners) == len(by_pid) and all(
                    len({tuple(r["gpus"]) for r in seen if r["pid"] == pid}) == 1 for pid in by_pid),
                    "no two workers share a GPU, and each keeps its own")

            for _ in range(workers):
                queues.send_inputs(store.handle, proxy_store.config(), args.tensor_mb, method="tensors_through_store", topic="gpu")
            for _ in range(workers):
                result = queues.get_result("gpu", timeout=600)
                value = result.value if result.success else {}
                checks.check(result.success and value["store_ok"] and value["proxy_ok"] and value["device"].startswith("cuda" if gpus else "cpu"),
                             f"{args.tensor_mb} MB tensor through the store onto {value.get('device')} "
                             f"({value.get('read_gbps', 0):.2f} GB/s) and through ProxyStore ({value.get('proxy_device')})"
                             + ("" if result.success else f": {result.failure_info}"))

            namespace = "gpu-check/moldesign"
            queues.send_inputs(0, smiles, store.handle, namespace, method="featurize", topic="gpu")
            featurized = queues.get_result("gpu", timeout=600)
            checks.check(featurized.success, f"featurized {len(smiles)} molecules into the store"
                         + ("" if featurized.success else f": {featurized.failure_info}"))
            targets = list(np.random.default_rng(0).normal(8.0, 1.0, 128))
            for member in range(workers):
                queues.send_inputs(smiles[:128], targets, member, store.handle, namespace, method="train_member_here", topic="gpu")
            for _ in range(workers):
                result = queues.get_result("gpu", timeout=600)
                checks.check(result.success and result.value["device"] == ("cuda" if gpus else "cpu"),
                             f"trained an ensemble member on {result.value['device'] if result.success else '?'} in "
                             f"{result.value['seconds'] if result.success else float('nan'):.1f} s"
                             + ("" if result.success else f": {result.failure_info}"))
            for _ in range(workers):
                queues.send_inputs(0, workers, store.handle, namespace, method="infer_here", topic="gpu")
            for _ in range(workers):
                result = queues.get_result("gpu", timeout=600)
                checks.check(result.success and result.value["finite"],
                             f"inference over {result.value['molecules'] if result.success else '?'} molecules with the "
                             f"{workers}-member ensemble on {result.value['device'] if result.success else '?'} in "
                             f"{result.value['seconds'] if result.success else float('nan'):.1f} s"
                             + ("" if result.success else f": {result.failure_info}"))
        proxy_store.close()
        unregister_store(proxy_store.name)

        config = wave.Config(num_sims=8, grid_size=128, num_steps=20, sim_sleep=0.0, num_trainers=workers, kernel_sizes=[3, 5],
                             data_path="ddict", channels=8)
        summary = wave.run(config, {"gpu": WorkerPool(gpus=True, cpu_fallback_workers=workers)}, RunDirectory(Path(scratch) / "wave"))
        devices = [trainer["device"] for trainer in summary["trainers"]]
        checks.check(summary["all_samples_seen"] and all(d == ("cuda" if gpus else "cpu") for d in devices),
                     f"wave: {len(devices)} trainers on {devices}, every sample seen; training run {float(summary['train_run_s']):.1f} s, "
                     f"I/O {float(summary['train_io_s']):.4f} s per trainer, {float(summary['data_gb']):.2f} GB")
    print(f"gpu_check: {'all checks passed' if not checks.failed else f'{checks.failed} check(s) FAILED'}", flush=True)
    sys.exit(1 if checks.failed else 0)


if __name__ == "__main__":
    main()
