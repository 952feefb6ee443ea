"""Entry point of the GPR-steered Ackley search for the launcher (``--app ackley``)."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import Any

from dragon_campaign import (
    ConfigError,
    DragonQueues,
    DragonTaskServer,
    ProxyStoreSettings,
    RunDirectory,
    WorkerPool,
    proxy_stores,
    run_campaign,
)
from dragon_campaign.apps.ackley.config import LOCAL, Config, default_pools
from dragon_campaign.apps.ackley.function import evaluate
from dragon_campaign.apps.ackley.gpr import fit_gpr
from dragon_campaign.apps.ackley.outputs import write_outputs
from dragon_campaign.apps.ackley.thinker import AckleySearch

logger = logging.getLogger(__name__)


def _queues(config: Config, stack: ExitStack, run_dir: RunDirectory) -> DragonQueues:
    """Task queues; with a remote endpoint, the fitted GPR comes back through the store as a ProxyStore proxy."""
    topics = [config.queue("evaluate"), config.queue("retrain")]
    if config.reprioritize_endpoint == LOCAL:
        return DragonQueues(topics=topics)
    settings = ProxyStoreSettings(backends={config.queue("retrain"): "ddict"}, threshold=0)
    return DragonQueues(topics=topics, **stack.enter_context(proxy_stores(settings, f"ackley-{run_dir.path.name}")))


def run(config: Config, pools: dict[str, WorkerPool], run_dir: RunDirectory, resume: bool = False) -> dict[str, Any]:
    """Run the search and write its outputs into the run directory; returns the summary.

    Args:
        resume: Carry on from the journal of ``run_dir`` (whatever ended the earlier job): the search starts
            over, and the points that finished are answered from the journal instead of evaluated again.
    """
    if pools != default_pools(config):
        raise ConfigError("The ackley app declares its pools in app.pools (with join_after); "
                          "remove the top-level pools: section and --workers")
    starting = default_pools(config)
    methods: list[Any] = [(evaluate, {"pool": [name for name in config.tasks["evaluate"] if name in starting]})]
    if config.reprioritize_endpoint != LOCAL:
        methods.append((fit_gpr, {"pool": config.reprioritize_endpoint, "memoize": False}))  # its model lives in the store
    with ExitStack() as stack:
        queues = _queues(config, stack, run_dir)
        server = DragonTaskServer(methods, queues, pools=dict(starting), run_dir=run_dir)
        thinker = AckleySearch(queues, config)
        logger.info(f"Ackley search: {config.search_space_size} points, {config.num_guesses} guesses, "
                    f"reprioritize={config.reprioritize} every {config.retrain_after} completions at {config.reprioritize_endpoint!r}")
        run_campaign(thinker, server, resume=resume)
    return write_outputs(thinker, run_dir)
