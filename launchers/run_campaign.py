"""Run a campaign on the Dragon runtime: ``bash run.sh --help`` (or ``python launchers/run_campaign.py --help``).

The command line lives in :mod:`dragon_campaign.cli.run_campaign`; this file is the script the Dragon
runtime runs as its head process (``dragon launchers/run_campaign.py ...`` works too).
"""

import sys

from dragon_campaign.cli import run_campaign


def main(argv: list[str] | None = None) -> int:
    return run_campaign.main(argv, script=__file__)


if __name__ == "__main__":
    sys.exit(main())
