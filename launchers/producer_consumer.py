"""Run the producer-consumer workflow once, over one data path, with the study's command-line flags.

    python launchers/producer_consumer.py --data_path ddict --num_sims 8 --grid_size 256 --num_steps 148 \\
        --sim_sleep 0.5 --kernel_sizes 3 5 7 9 --num_trainers 4 [--run-dir DIR]

(It starts the Dragon runtime itself, as run_campaign.py does; under ``dragon`` it runs directly.)
Every flag is a field of dragon_campaign.apps.wave.Config (--help lists them with their defaults). The
row of the timing table is appended to <run-dir>/producer_consumer.csv and printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import typing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from dragon_campaign import RunDirectory, interrupts  # noqa: E402
from dragon_campaign.apps import wave  # noqa: E402
from dragon_campaign.launch import run_under_dragon  # noqa: E402


def parse_args(argv: list[str] | None = None) -> tuple[wave.Config, Path | None]:
    parser = argparse.ArgumentParser(prog="python launchers/producer_consumer.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, field in wave.Config.model_fields.items():
        annotation = field.annotation
        kwargs: dict = {"default": field.get_default(call_default_factory=True), "help": f"{field.description} (default: %(default)s)"}
        if typing.get_origin(annotation) is list:
            kwargs.update(nargs="+", type=int)
        elif typing.get_origin(annotation) is typing.Literal:
            kwargs.update(choices=typing.get_args(annotation))
        else:
            base = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
            kwargs["type"] = base[0]
        parser.add_argument(f"--{name}", **kwargs)
    parser.add_argument("--run-dir", type=Path, help="run directory (default runs/<run-id>)")
    args = vars(parser.parse_args(argv))
    run_dir = args.pop("run_dir")
    return wave.Config(**args), run_dir


def main(argv: list[str] | None = None) -> int:
    config, run_dir_path = parse_args(argv)
    if "DRAGON_MY_PUID" not in os.environ:  # start the runtime with this script as its head process
        return run_under_dragon(__file__, sys.argv[1:] if argv is None else argv)
    interrupts.install()
    status = 1  # an exception escaping the workflow: its traceback is printed
    try:
        status = run(config, run_dir_path)
    finally:
        interrupts.finished(status)
    return status


def run(config: wave.Config, run_dir_path: Path | None) -> int:
    """The workflow, in the Dragon runtime's head process."""
    multiprocessing.set_start_method("dragon", force=True)
    run_dir = RunDirectory(run_dir_path)
    try:
        summary = wave.run(config, {}, run_dir)
    except interrupts.Interrupted as exc:
        print(f"Stopped by {exc}; rows of finished runs are in {run_dir.path / 'producer_consumer.csv'}", file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in summary.items() if k != "trainers"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
