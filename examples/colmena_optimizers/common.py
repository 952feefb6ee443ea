"""What the three optimizer demos share: the objective, the surrogate, the command line and the set-up.

The demos follow Colmena's optimizer examples (``demo_apps/optimizer-examples`` in the Colmena
repository): a Gaussian-process surrogate steers which points of the Ackley function to evaluate, where
each evaluation sleeps for a log-normally distributed time to stand in for a simulation. Everything here
but :func:`make_server` is what a Colmena user already has; :func:`make_server` is the part that changes
when porting (see docs/porting-from-colmena.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor, kernels
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool

# Workers import task functions by module name; this module is not installed, so its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

BOUND = 32.768  # Ackley's usual search box: [-BOUND, BOUND] in every dimension


def ackley(x: list[float], a: float = 20, b: float = 0.2, c: float = 2 * np.pi, mean_rt: float = 0.0,
           std_rt: float = 0.1) -> float:
    """The Ackley function at ``x``, after sleeping a log-normal time (``mean_rt``, ``std_rt``: of its log)."""
    time.sleep(np.random.lognormal(mean_rt, std_rt))
    point = np.asarray(x, dtype=float).reshape(1, -1)
    d = point.shape[1]
    value = -a * np.exp(-b * np.sqrt(np.sum(point**2, axis=1) / d)) - np.exp(np.cos(c * point).sum(axis=1) / d) + a + np.e
    return float(value[0])


def make_gpr() -> Pipeline:
    """The surrogate: inputs scaled to [-1, 1], a GPR with an RBF times a constant kernel."""
    return Pipeline([("scale", MinMaxScaler(feature_range=(-1, 1))),
                     ("gpr", GaussianProcessRegressor(normalize_y=True, kernel=kernels.RBF() * kernels.ConstantKernel()))])


def expected_improvement(gpr: Pipeline, candidates: np.ndarray, best_so_far: float) -> np.ndarray:
    """How much better than ``best_so_far`` (a minimum) each candidate is expected to be, in standard deviations."""
    mean, std = gpr.predict(candidates, return_std=True)
    return (best_so_far - mean) / std


def random_points(count: int, dim: int) -> np.ndarray:
    return np.random.uniform(-BOUND, BOUND, size=(count, dim))


def parse_args(name: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"The {name} optimizer demo, on Dragon worker pools")
    parser.add_argument("--num-guesses", "-n", type=int, default=100, help="evaluations in all (default 100)")
    parser.add_argument("--num-parallel", "-p", type=int, default=os.cpu_count(), help="evaluations at once (default: cores)")
    parser.add_argument("--dim", type=int, default=4, help="dimensions of the Ackley function (default 4)")
    parser.add_argument("--runtime", type=float, default=2.0, help="mean seconds per evaluation (default 2)")
    parser.add_argument("--runtime-var", type=float, default=0.1, help="standard deviation of the log of the runtime (default 0.1)")
    parser.add_argument("--out-dir", type=Path, default=Path("runs"), help="where the run's folder goes (default runs/)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.num_guesses < 1 or args.num_parallel < 1 or args.dim < 1 or args.runtime <= 0:
        parser.error("--num-guesses, --num-parallel, --dim and --runtime must be positive")
    return args


def prepare_run(name: str, args: argparse.Namespace) -> Path:
    """The run's folder with params.json, and logging to its run.log and the terminal."""
    out_dir = args.out_dir / f"{name}-N{args.num_guesses}-P{args.num_parallel}-{datetime.now():%d%m%y-%H%M%S}"
    out_dir.mkdir(parents=True, exist_ok=False)
    (out_dir / "params.json").write_text(json.dumps({**vars(args), "out_dir": str(args.out_dir), "file": f"{name}.py"}, indent=2))
    logging.basicConfig(format="%(asctime)s - %(name)s - %(levelname)s - %(message)s", level=logging.INFO,
                        handlers=[logging.FileHandler(out_dir / "run.log"), logging.StreamHandler(sys.stdout)])
    logging.getLogger("main").info(f"Running in {out_dir}")
    return out_dir


def make_server(methods: list, queues: DragonQueues, out_dir: Path, args: argparse.Namespace,
                optimizer_workers: int = 0) -> DragonTaskServer:
    """The part that differs from Colmena: Dragon worker pools instead of a Parsl configuration.

    ``args.num_parallel`` workers evaluate; ``optimizer_workers`` more (a pool of their own) run any method
    given as ``(function, {"pool": "optimizer"})``, as the interleaved demo's second Parsl executor did.
    """
    pools = {"simulation": WorkerPool(workers=args.num_parallel)}
    if optimizer_workers:
        pools["optimizer"] = WorkerPool(workers=optimizer_workers)
    return DragonTaskServer(methods, queues, pools=pools, run_dir=out_dir)



def run(name: str, thinker: Any, doer: DragonTaskServer, queues: DragonQueues, out_dir: Path) -> None:
    """As Colmena's demos do: start the task server and the thinker, wait for the thinker, send the kill
    signal, wait for the server; then write summary.json and exit 1 if the thinker failed."""
    started = time.monotonic()
    try:
        doer.start()
        thinker.start()
        thinker.join()
    finally:
        queues.send_kill_signal()
    doer.join()
    values: list[float] = thinker.train_y
    summary = {"demo": name, "evaluations": len(values), "best": min(values) if values else None,
               "wall_s": round(time.monotonic() - started, 2)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    if thinker.exceptions:
        sys.exit(f"The thinker failed: {thinker.exceptions[0]!r}")
