"""Run a campaign on the Dragon runtime.

    dragon-campaign run [CAMPAIGN] [--app NAME] [--config FILE] [--set KEY=VALUE] [--run-dir DIR] [--workers N]
                        [--stop-after S] [--dry-run]
    dragon-campaign run --resume RUN_DIR [--workers N] [--stop-after S]

CAMPAIGN is your own campaign, FILE.py[:FUNCTION] or MODULE[:FUNCTION] (FUNCTION defaults to campaign): a
function that takes a RunContext (config, pools, run_dir) and returns (thinker, server). Without it the
campaign is an installed application (--app, dragon-campaign apps lists them; default moldesign).
(``bash run.sh ...`` and ``python launchers/run_campaign.py ...`` do the same from the repository.) Options and
the configuration are checked first, without starting anything: --help, --help-app, --dry-run and every
configuration error answer at once. A valid campaign then starts the Dragon runtime with the launcher as
its head process; ``dragon`` runs as a child in a process group of its own, so Ctrl-C reaches the campaign,
not Dragon's launcher (see dragon_campaign/launch.py).

Every run directory gets report.html, a self-contained page (open it after scp) with the worker-utilization
timeline, busy fraction per worker, task durations, the campaign's progress, failures, the configuration and
the versions; --dashboard PORT serves it live on 127.0.0.1 while the campaign runs.

The configuration file (YAML; see launchers/configs/) has the sections pools:, proxystore:, app: (with
name:, the application, and its parameters: --help-app lists them), campaign: (instead of app.name) and
run_dir:. --set KEY=VALUE overrides one key of it (app.budget=8, pools.cpu.workers=2), checked the same
way; every configuration error is reported at once, with the key most likely meant. The run writes the
configuration it ran with, every default filled in, to <run-dir>/config.yaml: pass it to --config (with a
new --run-dir) to run the same campaign again.

Executors are started before the campaign and shut down after it, also when it fails. While it runs, a
status line (tasks per topic, busy workers per pool, results per second) is logged every 30 s. Everything
the run produces (results.jsonl, summary.json, campaign.log, config.yaml, report.html, Parsl's logs, and
utilization.png / .csv: which worker ran what, when) goes to the run directory, runs/<run-id>/ unless
--run-dir or run_dir say otherwise.

Ctrl-C, SIGTERM or SIGHUP (to this process or its process group) and --stop-after checkpoint the
campaign into <run-dir>/checkpoint/ and exit with status 3 (apps that cannot checkpoint stop cleanly with
130); a second Ctrl-C stops the workers at once (still checkpointed), a third tears the runtime down.
A signal during set-up stops the run cleanly with 130: there is nothing to checkpoint yet. --resume
RUN_DIR carries on in a new runtime, with the configuration the run started with (config.yaml in
RUN_DIR): from its checkpoint, else from its journal (journal.sqlite), whatever ended the job, SIGKILL
included; dragon-campaign status RUN_DIR says how far it got and how it resumes. Exit status: 0 finished, 1 failed, 2 configuration error, 3 checkpointed,
130 interrupted without a checkpoint. Whatever the exit, processes and /dev/shm segments the runtime left
behind are removed and named.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dragon_campaign import interrupts
from dragon_campaign.apps import DEFAULT_APPLICATION
from dragon_campaign.cli.logs import campaign_logging
from dragon_campaign.cli.plan import Launchable, Plan, choose, describe_app, resolve
from dragon_campaign.cli.user_campaign import CampaignFunction
from dragon_campaign.interrupts import Interrupted
from dragon_campaign.journal.database import SNAPSHOT_ENV, SNAPSHOT_S
from dragon_campaign.launch import run_under_dragon
from dragon_campaign.progress import DEFAULT_INTERVAL_S, PROGRESS_ENV
from dragon_campaign.runs import ConfigError, RunDirectory, read_config_data
from dragon_campaign.versions import version_line

logger = logging.getLogger("run_campaign")

EXIT_CHECKPOINTED = 3
EXIT_INTERRUPTED = 130
# How the user started the campaign, for the hints it prints (run.sh sets it; dragon is not on a run.sh user's PATH)
COMMAND_ENV = "DRAGON_CAMPAIGN_COMMAND"
DEFAULT_COMMAND = "dragon-campaign run"


def command() -> str:
    """How the user started the launcher, for the hints it prints."""
    return os.environ.get(COMMAND_ENV, DEFAULT_COMMAND)


def within(kind: Callable[[str], float], low: float, high: float = math.inf, *, above: bool = False,
           says: str) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` from ``low`` (excluded if ``above``) to ``high``; ``says`` what is
    allowed, in the error ("must be positive").
    """
    def parse(text: str) -> float:
        value = kind(text)
        if value < low or (above and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"{says}, got {text}")
        return value
    return parse


non_negative = within(float, 0, says="must be 0 or more")
positive = within(float, 0, above=True, says="must be positive")
at_least_one = within(int, 1, says="must be at least 1")
port = within(int, 0, 65535, says="must be a port number (0-65535; 0 picks a free one)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The launcher's options (exit 2 on a bad one)."""
    parser = argparse.ArgumentParser(prog=command(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("campaign", nargs="?", metavar="CAMPAIGN",
                        help="your campaign: FILE.py[:FUNCTION] or MODULE[:FUNCTION] (FUNCTION defaults to campaign)")
    parser.add_argument("--app", metavar="NAME",
                        help=f"installed application to run (dragon-campaign apps lists them; default: the config file's "
                             f"app.name, else {DEFAULT_APPLICATION}; with --resume: the run's)")
    parser.add_argument("--config", type=Path, help="YAML configuration file (pools, app and its parameters, run_dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="set one key of the configuration (dotted, a YAML value): --set app.budget=8 "
                             "--set pools.cpu.workers=2; repeat for more")
    parser.add_argument("--run-dir", type=Path, help="run directory; overrides run_dir of the config file")
    parser.add_argument("--workers", type=at_least_one, help="workers of the 'cpu' pool; overrides the config file")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level of the console and of campaign.log (default: INFO)")
    parser.add_argument("--progress-interval", type=non_negative, metavar="SECONDS",
                        help=f"seconds between status lines (tasks per topic, busy workers, results/s); 0: none (default {DEFAULT_INTERVAL_S:g})")
    parser.add_argument("--stop-after", type=positive, metavar="SECONDS",
                        help="checkpoint and stop after this many seconds of campaign, e.g. a few minutes before the "
                             "job's walltime (apps that can resume; SIGTERM checkpoints too)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="carry on in RUN_DIR with the configuration the run started with, whatever ended its job: from its "
                             "checkpoint, else from its journal (dragon-campaign status RUN_DIR tells how)")
    parser.add_argument("--snapshot-interval", type=positive, metavar="SECONDS",
                        help=f"seconds between snapshots of a thinker that can checkpoint, into the run's journal (default {SNAPSHOT_S:g})")
    parser.add_argument("--dashboard", type=port, metavar="PORT",
                        help="serve the run's report live on 127.0.0.1:PORT while the campaign runs (for an SSH tunnel)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the configuration, print the plan and exit without starting work")
    parser.add_argument("--help-app", action="store_true", help="list the parameters of the application and exit")
    parser.add_argument("--version", action="version", version=version_line())
    return parser.parse_args(argv)


def plan_of(args: argparse.Namespace) -> Plan:
    """The validated plan of the run the options ask for."""
    return resolve(app=args.app, config_file=args.config, run_dir=args.run_dir, workers=args.workers, resume=args.resume,
                   stopping=args.stop_after is not None, campaign=args.campaign,
                   overrides=args.overrides)


def main(argv: list[str] | None = None, script: str | None = None) -> int:
    """The command line; ``script`` is the file the runtime runs as its head process (the launcher)."""
    args = parse_args(argv)
    try:
        if args.help_app:  # the application may come from the file; its parameters need not be valid yet
            name, application = what_runs(args)
            print(describe_app(name, application))
            return 0
        plan = plan_of(args)
    except ConfigError as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(yaml.safe_dump({"plan": plan.describe()}, sort_keys=False), end="")
        return 0
    if "DRAGON_MY_PUID" not in os.environ:  # a valid campaign: start the runtime, with the launcher as its head process
        # dragon, dragon-config and the workers' Python come from this interpreter's environment, activated or not
        os.environ["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), os.environ.get("PATH")]))
        if isinstance(plan.application, CampaignFunction) and (folder := plan.application.search_path()):
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")]))  # for the workers
        return run_under_dragon(script or __file__, sys.argv[1:] if argv is None else argv)
    interrupts.install()
    status = 1  # an exception escaping run(): its traceback is printed
    try:
        status = run(args, plan)
    except Interrupted as exc:
        print(f"Stopped by {exc} before the campaign started or after it ended: nothing to checkpoint", file=sys.stderr)
        status = EXIT_INTERRUPTED
    finally:
        interrupts.finished(status)
    return status


def what_runs(args: argparse.Namespace) -> tuple[str, Launchable]:
    """The application or campaign function the options name, without validating its parameters."""
    data = read_config_data(args.config) if args.config else {}
    section: dict[str, Any] = data["app"] if isinstance(data, dict) and isinstance(data.get("app"), dict) else {}
    named = args.campaign or (data.get("campaign") if isinstance(data, dict) else None)
    return choose(args.app, named, section, str(args.config), relative_to=args.config.parent if args.config and not args.campaign else None)


def run(args: argparse.Namespace, plan: Plan) -> int:
    """The campaign, in the Dragon runtime's head process (the only place that imports Dragon)."""
    import multiprocessing

    from dragon_campaign.bridges import executor_pools
    from dragon_campaign.campaign import CampaignFailed, CampaignSuspended
    from dragon_campaign.dashboard import Dashboard

    run_dir = RunDirectory(plan.run_dir)
    if args.resume is None:
        plan.write(run_dir.path, command())
    multiprocessing.set_start_method("dragon", force=True)
    if args.progress_interval is not None:
        os.environ[PROGRESS_ENV] = str(args.progress_interval)
    if args.snapshot_interval is not None:
        os.environ[SNAPSHOT_ENV] = str(args.snapshot_interval)
    options: dict[str, object] = {"proxystore": plan.proxystore} if plan.proxystore else {}
    if args.resume is not None:
        options["resume"] = True
    if args.stop_after is not None:
        options["stop_after"] = args.stop_after
    app_run = plan.application.runner()
    dashboard = Dashboard(run_dir.path, args.dashboard) if args.dashboard is not None else contextlib.nullcontext()
    with campaign_logging(args.log_level, run_dir), dashboard:
        logger.info(f"{'Resuming' if args.resume else 'Running'} {plan.name} in {run_dir.path}")
        try:
            with executor_pools(plan.executors, run_dir.path) as remote:
                summary = app_run(plan.app_config, {**plan.pools, **remote}, run_dir, **options)
        except ConfigError as exc:  # what the app checks against the pools (e.g. which pool may run what)
            logger.error(f"Configuration error: {exc}")
            return 2
        except CampaignFailed as exc:
            logger.error(f"The campaign failed: {exc}; results so far are in {run_dir.results_path}")
            return 1
        except CampaignSuspended as exc:
            logger.warning(f"The campaign stopped at {exc.reason} and checkpointed to {exc.path}; carry on with: "
                           f"{command()} --resume {run_dir.path}")
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
            write_run_report(run_dir)
    print(json.dumps(summary, indent=2))
    return 0


def write_run_report(run_dir: RunDirectory) -> None:
    """report.html, also after a failure; a problem drawing it is only logged."""
    from dragon_campaign.report import write_report

    try:
        logger.info(f"Report: {write_report(run_dir.path)}")
    except Exception:
        logger.warning("Could not write the run report", exc_info=True)


def draw_utilization(run_dir: RunDirectory) -> None:
    """utilization.png and .csv from the results so far, also after a failure; a drawing problem is only logged."""
    from dragon_campaign.timeline import write_utilization

    if not run_dir.results_path.exists():
        return
    try:
        picture = write_utilization(run_dir.results_path, run_dir.path)
    except Exception:
        logger.warning("Could not draw the worker utilization timeline", exc_info=True)
        return
    if picture is not None:
        logger.info(f"Worker utilization timeline: {picture}")


if __name__ == "__main__":  # the head process of the runtime that dragon-campaign run starts
    sys.exit(main())
