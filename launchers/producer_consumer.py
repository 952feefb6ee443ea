"""Run the producer-consumer workflow once over one data path: ``python launchers/producer_consumer.py --help``.

The command line lives in :mod:`dragon_campaign.cli.producer_consumer`; this file is the script the Dragon
runtime runs as its head process.
"""

import sys

from dragon_campaign.cli import producer_consumer


def main(argv: list[str] | None = None) -> int:
    return producer_consumer.main(argv, script=__file__)


if __name__ == "__main__":
    sys.exit(main())
