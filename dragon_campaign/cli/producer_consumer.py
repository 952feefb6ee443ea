r"""Run the producer-consumer workflow once, over one data path, with the study's command-line flags.

    python launchers/producer_consumer.py --data_path ddict --num_sims 8 --grid_size 256 --num_steps 148 \
        --sim_sleep 0.5 --kernel_sizes 3 5 7 9 --num_trainers 4 [--run-dir DIR]

The flags are checked first, without starting anything; a valid run then starts the Dragon runtime with
the launcher as its head process (under ``dragon`` it runs directly). Every flag is a field of
dragon_campaign.apps.wave.Config. The row of the timing table is appended to
<run-dir>/producer_consumer.csv and printed; the log (phases, a status line every --progress-interval
seconds) goes to the console and <run-dir>/campaign.log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from pathlib import Path
from typing import NamedTuple

from pydantic import ValidationError

from dragon_campaign import interrupts
from dragon_campaign.apps.wave.config import Config
from dragon_campaign.cli.logs import campaign_logging
from dragon_campaign.cli.run_campaign import non_negative
from dragon_campaign.launch import run_under_dragon
from dragon_campaign.progress import DEFAULT_INTERVAL_S, PROGRESS_ENV
from dragon_campaign.runs import RunDirectory

LAUNCHER_DEFAULTS = {"keep_data": False}  # a timing run that never resumes: keeping the data would only add to its time


class Options(NamedTuple):
    """The workflow's parameters and the run's own options."""

    config: Config
    run_dir: Path | None
    progress_interval: float | None


def parse_args(argv: list[str] | None = None) -> Options:
    """The workflow's parameters and the run's options from the command line (exit 2 on a bad one)."""
    parser = argparse.ArgumentParser(prog="python launchers/producer_consumer.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, field in Config.model_fields.items():
        annotation = field.annotation
        default = LAUNCHER_DEFAULTS.get(name, field.get_default(call_default_factory=True))
        kwargs: dict = {"default": default, "help": (field.description or name) + ("" if default is None else " (default: %(default)s)")}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is list:
            kwargs.update(nargs="+", type=int)
        elif typing.get_origin(annotation) is typing.Literal:
            kwargs.update(choices=typing.get_args(annotation))
        else:
            base = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
            kwargs["type"] = base[0]
        parser.add_argument(f"--{name}", **kwargs)
    parser.add_argument("--run-dir", type=Path, help="run directory (default runs/<run-id>)")
    parser.add_argument("--progress-interval", type=non_negative, metavar="SECONDS",
                        help=f"seconds between status lines; 0: none (default {DEFAULT_INTERVAL_S:g})")
    args = vars(parser.parse_args(argv))
    run_dir, progress_interval = args.pop("run_dir"), args.pop("progress_interval")
    try:
        return Options(Config(**args), run_dir, progress_interval)
    except ValidationError as exc:  # a bound, or a combination of flags
        parser.error("; ".join((f"--{e['loc'][0]}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ") for e in exc.errors()))


def main(argv: list[str] | None = None, script: str | None = None) -> int:
    """The command line; ``script`` is the file the runtime runs as its head process (the launcher)."""
    options = parse_args(argv)
    if "DRAGON_MY_PUID" not in os.environ:  # start the runtime with the launcher as its head process
        return run_under_dragon(script or __file__, sys.argv[1:] if argv is None else argv)
    interrupts.install()
    status = 1  # an exception escaping the workflow: its traceback is printed
    try:
        status = run(options)
    finally:
        interrupts.finished(status)
    return status


def run(options: Options) -> int:
    """The workflow, in the Dragon runtime's head process."""
    import multiprocessing

    from dragon_campaign.apps.wave.app import run as run_workflow

    multiprocessing.set_start_method("dragon", force=True)
    if options.progress_interval is not None:
        os.environ[PROGRESS_ENV] = str(options.progress_interval)
    run_dir = RunDirectory(options.run_dir)
    with campaign_logging("INFO", run_dir):
        try:
            summary = run_workflow(options.config, {}, run_dir)
        except interrupts.Interrupted as exc:
            print(f"Stopped by {exc}; rows of finished runs are in {run_dir.path / 'producer_consumer.csv'}", file=sys.stderr)
            return 130
    print(json.dumps({k: v for k, v in summary.items() if k != "trainers"}))
    return 0
