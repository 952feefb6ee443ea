"""Run a campaign on the Dragon runtime.

    dragon launchers/run_campaign.py [--app NAME] [--config FILE] [--run-dir DIR] [--workers N] [--dry-run]

The configuration file (YAML) has three optional sections:

    pools:            # worker pools by name; keys are those of dragon_campaign.WorkerPool
      cpu: {workers: 4}
      gpu: {gpus: true}
    app:              # the application's parameters (see --help-app)
      budget: 64
    run_dir: runs/my-run

Everything the run produces (results.jsonl, summary.json, campaign.log, the resolved config.yaml) goes to
the run directory, runs/<run-id>/ unless --run-dir or run_dir say otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import multiprocessing
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from dragon_campaign import ConfigError, RunDirectory, WorkerPool  # noqa: E402
from dragon_campaign.apps import APPLICATIONS, DEFAULT_APPLICATION  # noqa: E402
from dragon_campaign.campaign import CampaignFailed  # noqa: E402
from dragon_campaign.runs import load_config, parse_config  # noqa: E402

logger = logging.getLogger("run_campaign")


class CampaignConfig(BaseModel):
    """The configuration file."""

    model_config = ConfigDict(extra="forbid")

    pools: dict[str, WorkerPool] | None = Field(None, description="Worker pools by name (default: the app's default_pools, else one CPU pool with a worker per core)")
    app: dict[str, Any] = Field(default_factory=dict, description="Parameters of the application")
    run_dir: str | None = Field(None, description="Run directory (default runs/<run-id>)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dragon launchers/run_campaign.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--app", choices=sorted(APPLICATIONS), default=DEFAULT_APPLICATION,
                        help=f"application to run (default: {DEFAULT_APPLICATION})")
    parser.add_argument("--config", type=Path, help="YAML configuration file (pools, app parameters, run_dir)")
    parser.add_argument("--run-dir", type=Path, help="run directory; overrides run_dir of the config file")
    parser.add_argument("--workers", type=int, help="workers of the 'cpu' pool; overrides the config file")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level of the console and of campaign.log (default: INFO)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the configuration, print the plan and exit without starting work")
    parser.add_argument("--help-app", action="store_true", help="list the parameters of --app and exit")
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace) -> tuple[Any, BaseModel, dict[str, WorkerPool], Path | None]:
    """Load and validate everything before any work starts."""
    app = importlib.import_module(APPLICATIONS[args.app])
    source = str(args.config) if args.config else "(defaults)"
    config = load_config(args.config, CampaignConfig) if args.config else CampaignConfig()
    app_config = parse_config(config.app, app.Config, source=source, prefix="app.")
    default_pools = getattr(app, "default_pools", lambda _: {"cpu": WorkerPool()})
    pools = dict(config.pools or default_pools(app_config))
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {args.workers}")
        pools["cpu"] = WorkerPool(**{**_fields(pools.get("cpu", WorkerPool())), "workers": args.workers})
    run_dir = args.run_dir or (Path(config.run_dir) if config.run_dir else None)
    return app, app_config, pools, run_dir


def _fields(pool: WorkerPool) -> dict[str, Any]:
    return {name: getattr(pool, name) for name in pool.__dataclass_fields__}


def describe_app(app: Any) -> str:
    lines = [f"Parameters of {app.__name__} (the app: section):"]
    for name, field in app.Config.model_fields.items():
        if field.is_required():
            default = "required"
        else:
            default = f"default {field.get_default(call_default_factory=True)!r}"
        lines.append(f"  {name:<20} {default:<18} {field.description or ''}")
    return "\n".join(lines)


@contextmanager
def campaign_logging(level: str, run_dir: RunDirectory) -> Iterator[None]:
    """Log to the console and to campaign.log while the campaign runs."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    previous_level = root.level
    handlers = [logging.StreamHandler(sys.stderr), logging.FileHandler(run_dir.path / "campaign.log")]
    root.setLevel(level)
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    for noisy in ("dragon", "api_setup"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(previous_level)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.help_app:  # before the configuration is checked: it lists what the configuration may hold
        print(describe_app(importlib.import_module(APPLICATIONS[args.app])))
        return 0
    try:
        app, app_config, pools, run_dir_path = resolve(args)
    except ConfigError as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return 2
    plan = {
        "app": args.app,
        "pools": {name: _fields(pool) for name, pool in pools.items()},
        "app_config": app_config.model_dump(),
        "run_dir": str(run_dir_path) if run_dir_path else "runs/<run-id>",
    }
    if args.dry_run:
        print(yaml.safe_dump({"plan": plan}, sort_keys=False), end="")
        return 0
    if "DRAGON_MY_PUID" not in os.environ:
        print("run_campaign.py must run under the Dragon runtime: dragon launchers/run_campaign.py ...", file=sys.stderr)
        return 2
    run_dir = RunDirectory(run_dir_path)
    plan["run_dir"] = str(run_dir.path)
    (run_dir.path / "config.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    multiprocessing.set_start_method("dragon", force=True)
    with campaign_logging(args.log_level, run_dir):
        logger.info(f"Running {args.app} in {run_dir.path}")
        try:
            summary = app.run(app_config, pools, run_dir)
        except CampaignFailed as exc:
            logger.error(f"The campaign failed: {exc}; results so far are in {run_dir.results_path}")
            return 1
        except KeyboardInterrupt as exc:
            logger.warning(f"The campaign was interrupted ({exc}); results so far are in {run_dir.results_path}")
            return 130
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
