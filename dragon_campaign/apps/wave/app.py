"""Entry point of the producer-consumer workflow for the launcher (``--app wave``)."""

from __future__ import annotations

import json
import logging
from typing import Any

from dragon_campaign import ConfigError, RunDirectory, WorkerPool
from dragon_campaign.apps.wave.config import Config, default_pools
from dragon_campaign.apps.wave.workflow import append_csv, run_dragon, run_parsl, run_ray

logger = logging.getLogger(__name__)


RESUMABLE_PATHS = ("ddict", "proxystore")  # the paths whose tasks the task server runs and journals


def run(config: Config, pools: dict[str, WorkerPool], run_dir: RunDirectory, resume: bool = False) -> dict[str, Any]:
    """Run one data path; append its row to <run_dir>/producer_consumer.csv; return the report.

    Args:
        resume: Carry on from the journal of ``run_dir`` (whatever ended the earlier job): finished
            simulations (their arrays kept, ``keep_data``) and trainers are not run again; the row's
            ``kept_tasks`` counts them, and its times are of the rest only.
    """
    from dragon.native.machine import System

    if resume and config.data_path not in RESUMABLE_PATHS:
        raise ConfigError(f"data_path {config.data_path} cannot resume: its tasks run on {'Ray' if config.data_path == 'ray' else 'Parsl'}, "
                         f"outside the task server and its journal (paths that resume: {', '.join(RESUMABLE_PATHS)})")

    nodes = System().nnodes
    logger.info(f"Producer-consumer over {config.data_path}: {config.num_sims} simulations, {len(config.trainer_kernels)} trainers")
    if config.data_path in ("futures", "files"):
        report = run_parsl(config, run_dir, nodes=1)
    elif config.data_path == "ray":
        report = run_ray(config)
    else:
        chosen = {**default_pools(config), **{k: v for k, v in pools.items() if k in ("cpu", "gpu")}}
        report = run_dragon(config, run_dir, nodes, chosen, resume=resume)
    append_csv(report, config, run_dir.path / "producer_consumer.csv")
    summary = {**report.csv_row(config), "trainers": report.trainers}
    (run_dir.path / "summary.json").write_text(json.dumps(summary, indent=2))
    if not report.all_samples_seen:
        raise RuntimeError(f"A trainer did not see every sample: {report.trainers}")
    return summary
