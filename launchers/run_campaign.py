"""Run a campaign on the Dragon runtime.

    python launchers/run_campaign.py [--app NAME] [--config FILE] [--run-dir DIR] [--workers N] [--stop-after S] [--dry-run]
    python launchers/run_campaign.py --resume RUN_DIR [--workers N] [--stop-after S]

(bash run.sh ... does the same with the virtual environment on PATH.) The configuration is checked first;
a valid campaign then starts the Dragon runtime with this script as its head process. ``dragon`` runs as a
child in a process group of its own, so Ctrl-C reaches the campaign, not Dragon's launcher (see
dragon_campaign/launch.py); ``dragon launchers/run_campaign.py ...`` still works, without that protection.

The configuration file (YAML) has four optional sections:

    pools:            # worker pools by name
      cpu: {workers: 4}                         # a Dragon pool: keys of dragon_campaign.WorkerPool
      gpu: {gpus: true}
      remote: {executor: parsl-local, workers: 2}   # an executor pool: keys of dragon_campaign.bridges.ExecutorSpec
    proxystore:       # per-topic ProxyStore backends: keys of dragon_campaign.bridges.ProxyStoreSettings
      backends: {train: file}
      file_dir: /path/every/site/reaches
    app:              # the application's parameters (see --help-app); e.g. which pool runs which method
      budget: 64
    run_dir: runs/my-run

Executors are started before the campaign and shut down after it, also when it fails. While it runs, a
status line (tasks per topic, busy workers per pool, results per second) is logged every 30 s. Everything
the run produces (results.jsonl, summary.json, campaign.log, the resolved config.yaml, Parsl's logs, and
utilization.png / .csv: which worker ran what, when) goes to the run directory, runs/<run-id>/ unless
--run-dir or run_dir say otherwise.

Ctrl-C, SIGTERM or SIGHUP (to this process or its process group) and --stop-after checkpoint the
campaign into <run-dir>/checkpoint/ and exit with status 3 (apps that cannot checkpoint stop cleanly with
130); a second Ctrl-C stops the workers at once (still checkpointed), a third tears the runtime down.
A signal during set-up stops the run cleanly with 130: there is nothing to checkpoint yet. --resume
RUN_DIR carries on from a checkpoint in a new runtime, with the configuration the run started with
(config.yaml in RUN_DIR). Exit status: 0 finished, 1 failed, 2 configuration error, 3 checkpointed,
130 interrupted without a checkpoint. Whatever the exit, processes and /dev/shm segments the runtime left
behind are removed and named.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import multiprocessing
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from dragon_campaign import ConfigError, RunDirectory, WorkerPool  # noqa: E402
from dragon_campaign.apps import APPLICATIONS, DEFAULT_APPLICATION  # noqa: E402
from dragon_campaign.bridges import ExecutorSpec, ProxyStoreSettings, executor_pools  # noqa: E402
from dragon_campaign.campaign import CampaignFailed, CampaignSuspended  # noqa: E402
from dragon_campaign import interrupts  # noqa: E402
from dragon_campaign.checkpoint import CHECKPOINT_DIR  # noqa: E402
from dragon_campaign.interrupts import Interrupted  # noqa: E402
from dragon_campaign.launch import run_under_dragon  # noqa: E402
from dragon_campaign.progress import DEFAULT_INTERVAL_S, PROGRESS_ENV  # noqa: E402
from dragon_campaign.runs import load_config, parse_config  # noqa: E402
from dragon_campaign.timeline import write_utilization  # noqa: E402

logger = logging.getLogger("run_campaign")

EXIT_CHECKPOINTED = 3
EXIT_INTERRUPTED = 130
# How the user started the campaign, for the resume hint (run.sh sets it; dragon is not on a run.sh user's PATH)
COMMAND_ENV = "DRAGON_CAMPAIGN_COMMAND"
DEFAULT_COMMAND = "python launchers/run_campaign.py"


def _pool_kind(entry: Any) -> str:
    if isinstance(entry, dict):
        return "<executor>" if "executor" in entry else "<dragon>"
    return "<executor>" if isinstance(entry, ExecutorSpec) else "<dragon>"


# A pool entry is an executor pool when it has an ``executor:`` key, else a Dragon pool. The tags in
# angle brackets appear in pydantic's error locations; parse_config leaves them out of its messages.
PoolEntry = Annotated[Annotated[WorkerPool, Tag("<dragon>")] | Annotated[ExecutorSpec, Tag("<executor>")], Discriminator(_pool_kind)]


class CampaignConfig(BaseModel):
    """The configuration file."""

    model_config = ConfigDict(extra="forbid")

    pools: dict[str, PoolEntry] | None = Field(None, description="Pools by name (default: the app's default_pools, else one CPU pool with a worker per core)")
    proxystore: ProxyStoreSettings | None = Field(None, description="Per-topic ProxyStore backends (apps whose run() takes proxystore)")
    app: dict[str, Any] = Field(default_factory=dict, description="Parameters of the application")
    run_dir: str | None = Field(None, description="Run directory (default runs/<run-id>)")


class Plan(BaseModel):
    """Everything a run needs, validated before any work starts."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    app: Any
    app_config: BaseModel
    pools: dict[str, WorkerPool]
    executors: dict[str, ExecutorSpec]
    proxystore: ProxyStoreSettings | None
    run_dir: Path | None

    def describe(self) -> dict[str, Any]:
        """The plan as plain data (printed by --dry-run, written to config.yaml; it holds no credential)."""
        return {
            "app": self.name,
            "pools": {**{n: _fields(p) for n, p in self.pools.items()}, **{n: s.model_dump() for n, s in self.executors.items()}},
            "proxystore": self.proxystore.model_dump() if self.proxystore else None,
            "app_config": self.app_config.model_dump(),
            "run_dir": str(self.run_dir) if self.run_dir else "runs/<run-id>",
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=os.environ.get(COMMAND_ENV, DEFAULT_COMMAND),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--app", choices=sorted(APPLICATIONS),
                        help=f"application to run (default: {DEFAULT_APPLICATION}; with --resume: the run's)")
    parser.add_argument("--config", type=Path, help="YAML configuration file (pools, app parameters, run_dir)")
    parser.add_argument("--run-dir", type=Path, help="run directory; overrides run_dir of the config file")
    parser.add_argument("--workers", type=int, help="workers of the 'cpu' pool; overrides the config file")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level of the console and of campaign.log (default: INFO)")
    parser.add_argument("--progress-interval", type=float, metavar="SECONDS",
                        help=f"seconds between status lines (tasks per topic, busy workers, results/s); 0: none (default {DEFAULT_INTERVAL_S:g})")
    parser.add_argument("--stop-after", type=float, metavar="SECONDS",
                        help="checkpoint and stop after this many seconds of campaign, e.g. a few minutes before the "
                             "job's walltime (apps that can resume; SIGTERM checkpoints too)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="carry on from the checkpoint in RUN_DIR with the configuration the run started with")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the configuration, print the plan and exit without starting work")
    parser.add_argument("--help-app", action="store_true", help="list the parameters of --app and exit")
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace) -> Plan:
    """Load and validate everything before any work starts."""
    if args.resume is not None:
        name, source, config = _resumed_config(args)
    else:
        name = args.app or DEFAULT_APPLICATION
        source = str(args.config) if args.config else "(defaults)"
        config = load_config(args.config, CampaignConfig) if args.config else CampaignConfig()
    app = importlib.import_module(APPLICATIONS[name])
    if (args.resume is not None or args.stop_after is not None) and "resume" not in inspect.signature(app.run).parameters:
        raise ConfigError(f"the {name} app cannot be checkpointed: --stop-after and --resume need an app whose run() takes resume")
    if args.stop_after is not None and args.stop_after <= 0:
        raise ConfigError(f"--stop-after must be positive, got {args.stop_after:g}")
    app_config = parse_config(config.app, app.Config, source=source, prefix="app.")
    default_pools = getattr(app, "default_pools", lambda _: {"cpu": WorkerPool()})
    entries = dict(config.pools or default_pools(app_config))
    pools = {name: entry for name, entry in entries.items() if isinstance(entry, WorkerPool)}
    executors = {name: entry for name, entry in entries.items() if isinstance(entry, ExecutorSpec)}
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {args.workers}")
        if "cpu" in executors:
            raise ConfigError("--workers sets the Dragon pool 'cpu', but 'cpu' is an executor pool in the configuration")
        pools["cpu"] = WorkerPool(**{**_fields(pools.get("cpu", WorkerPool())), "workers": args.workers})
    if config.proxystore is not None and "proxystore" not in inspect.signature(app.run).parameters:
        raise ConfigError(f"{source}: proxystore: the {name} app does not take per-topic ProxyStore settings")
    run_dir = args.run_dir or (Path(config.run_dir) if config.run_dir else None)
    if args.resume is None and run_dir is not None and (run_dir / "results.jsonl").exists():
        raise ConfigError(f"{run_dir} holds the results of an earlier run: resume it with --resume {run_dir} "
                          "(if it checkpointed), or start in another run directory")
    return Plan(name=name, app=app, app_config=app_config, pools=pools, executors=executors, proxystore=config.proxystore, run_dir=run_dir)


def _resumed_config(args: argparse.Namespace) -> tuple[str, str, CampaignConfig]:
    """The application and configuration a run started with (its config.yaml), checked for a checkpoint."""
    run_dir: Path = args.resume
    for option, value in (("--config", args.config), ("--run-dir", args.run_dir)):
        if value is not None:
            raise ConfigError(f"--resume takes the configuration and run directory from {run_dir}: drop {option}")
    described_file = run_dir / "config.yaml"
    if not described_file.exists():
        raise ConfigError(f"--resume {run_dir}: no config.yaml there; is it a run directory of run_campaign.py?")
    if not (run_dir / CHECKPOINT_DIR / "campaign.pkl").exists():
        state = "the campaign finished (summary.json)" if (run_dir / "summary.json").exists() else "its job ended before it could checkpoint"
        raise ConfigError(f"--resume {run_dir}: no checkpoint to resume from: {state}")
    described = yaml.safe_load(described_file.read_text(encoding="utf-8"))
    if args.app is not None and args.app != described["app"]:
        raise ConfigError(f"--resume {run_dir}: the run is a {described['app']} campaign, not {args.app}")
    config = parse_config({"pools": described["pools"], "proxystore": described["proxystore"], "app": described["app_config"],
                           "run_dir": str(run_dir)}, CampaignConfig, source=str(described_file))
    return described["app"], str(described_file), config


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


# Libraries whose records below WARNING stay out of the console and campaign.log: Dragon's are internal,
# Parsl's go to its own logs under the run directory (it sets its loggers to DEBUG when it starts).
QUIET_LIBRARIES = ("dragon", "api_setup", "parsl")


def _not_quiet_detail(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name.split(".")[0] not in QUIET_LIBRARIES


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
        handler.addFilter(_not_quiet_detail)
        root.addHandler(handler)
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
        print(describe_app(importlib.import_module(APPLICATIONS[args.app or DEFAULT_APPLICATION])))
        return 0
    try:
        plan = resolve(args)
    except ConfigError as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return 2
    described = plan.describe()
    if args.dry_run:
        print(yaml.safe_dump({"plan": described}, sort_keys=False), end="")
        return 0
    if "DRAGON_MY_PUID" not in os.environ:  # a valid campaign: start the runtime, with this script as its head process
        return run_under_dragon(__file__, sys.argv[1:] if argv is None else argv)
    interrupts.install()
    status = 1  # an exception escaping run(): its traceback is printed
    try:
        status = run(args, plan, described)
    except Interrupted as exc:
        print(f"Stopped by {exc} before the campaign started or after it ended: nothing to checkpoint", file=sys.stderr)
        status = EXIT_INTERRUPTED
    finally:
        interrupts.finished(status)
    return status


def run(args: argparse.Namespace, plan: Plan, described: dict[str, Any]) -> int:
    """The campaign, in the Dragon runtime's head process."""
    run_dir = RunDirectory(plan.run_dir)
    if args.resume is None:
        described["run_dir"] = str(run_dir.path)
        (run_dir.path / "config.yaml").write_text(yaml.safe_dump(described, sort_keys=False))
    multiprocessing.set_start_method("dragon", force=True)
    if args.progress_interval is not None:
        os.environ[PROGRESS_ENV] = str(args.progress_interval)
    options: dict[str, Any] = {"proxystore": plan.proxystore} if plan.proxystore else {}
    if args.resume is not None:
        options["resume"] = True
    if args.stop_after is not None:
        options["stop_after"] = args.stop_after
    with campaign_logging(args.log_level, run_dir):
        logger.info(f"{'Resuming' if args.resume else 'Running'} {plan.name} in {run_dir.path}")
        try:
            with executor_pools(plan.executors, run_dir.path) as remote:
                summary = plan.app.run(plan.app_config, {**plan.pools, **remote}, run_dir, **options)
        except ConfigError as exc:  # what the app checks against the pools (e.g. which pool may run what)
            logger.error(f"Configuration error: {exc}")
            return 2
        except CampaignFailed as exc:
            logger.error(f"The campaign failed: {exc}; results so far are in {run_dir.results_path}")
            return 1
        except CampaignSuspended as exc:
            logger.warning(f"The campaign stopped at {exc.reason} and checkpointed to {exc.path}; carry on with: "
                           f"{os.environ.get(COMMAND_ENV, DEFAULT_COMMAND)} --resume {run_dir.path}")
            return EXIT_CHECKPOINTED
        except Interrupted as exc:
            logger.warning(f"Stopped by {exc} while no campaign ran (set-up or wrap-up): nothing to checkpoint; "
                           f"results so far are in {run_dir.results_path}")
            return EXIT_INTERRUPTED
        except KeyboardInterrupt as exc:  # an app that cannot checkpoint, stopped by a signal
            logger.warning(f"The campaign was {exc or 'interrupted'}; results so far are in {run_dir.results_path}")
            return EXIT_INTERRUPTED
        finally:
            draw_utilization(run_dir)
    print(json.dumps(summary, indent=2))
    return 0


def draw_utilization(run_dir: RunDirectory) -> None:
    """utilization.png and .csv from the results so far, also after a failure; a drawing problem is only logged."""
    if not run_dir.results_path.exists():
        return
    try:
        picture = write_utilization(run_dir.results_path, run_dir.path)
    except Exception:
        logger.warning("Could not draw the worker utilization timeline", exc_info=True)
        return
    if picture is not None:
        logger.info(f"Worker utilization timeline: {picture}")


if __name__ == "__main__":
    sys.exit(main())
