"""``dragon-campaign``: the one command for any campaign.

    dragon-campaign run [CAMPAIGN] [options]   run a campaign (yours, FILE.py[:FUNCTION], or --app NAME)
    dragon-campaign apps                       the installed applications (entry points dragon_campaign.apps)
    dragon-campaign new NAME [--dir DIR]       write a campaign package to start from (config, thinker, tasks, test)
    dragon-campaign status RUN_DIR [--json]    how far a run got, what waits, what failed, how it resumes
    dragon-campaign --version

``dragon-campaign run --help`` lists the run's options. The command starts ``dragon`` itself, as a child:
Ctrl-C reaches the campaign, which checkpoints or stops cleanly, and whatever the runtime leaves is removed.
"""

from __future__ import annotations

import argparse
import sys

from dragon_campaign.versions import version_line

COMMANDS = {"run": "run a campaign", "apps": "list the installed applications", "new": "write a new campaign package",
            "status": "how far a run got and how it resumes (reads its journal; starts nothing)"}


def main(argv: list[str] | None = None) -> int:
    """The console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":  # its options are the launcher's own (dragon-campaign run --help)
        from dragon_campaign.cli import run_campaign

        return run_campaign.main(argv[1:])
    parser = argparse.ArgumentParser(prog="dragon-campaign", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=name != "run")
    new = commands.choices["new"]
    new.add_argument("name", help="the package's name (a Python identifier, e.g. my_search)")
    new.add_argument("--dir", default=".", help="where to write the package's folder (default: here)")
    status = commands.choices["status"]
    status.add_argument("run_dir", metavar="RUN_DIR", help="the run's directory (runs/<run-id>)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    args = parser.parse_args(argv)
    if args.command == "status":
        return show_status(args.run_dir, args.json)
    if args.command == "apps":
        return list_apps()
    if args.command == "new":
        from dragon_campaign.cli.template import write_template

        return write_template(args.name, args.dir)
    parser.print_help()
    return 2


def show_status(run_dir: str, as_json: bool) -> int:
    """Print how far a run got; exit 0 if it finished, 3 if it can resume, 1 if it cannot, 2 if it is no run."""
    from pathlib import Path

    from dragon_campaign.cli.run_campaign import command
    from dragon_campaign.journal.view import run_status

    if not Path(run_dir).is_dir():
        print(f"dragon-campaign status: {run_dir}: no such run directory", file=sys.stderr)
        return 2
    status = run_status(Path(run_dir), command())
    print(status.to_json() if as_json else status.text())
    return 0 if status.state == "finished" else 3 if status.resumable else 1


def list_apps() -> int:
    """Print each installed application with its summary (and why a broken one cannot load)."""
    from dragon_campaign.apps import DEFAULT_APPLICATION, BrokenApplication, installed

    found = installed()
    if not found:
        print("No application is installed (the entry-point group dragon_campaign.apps is empty)")
        return 1
    width = max(map(len, found))
    for name, application in sorted(found.items()):
        if isinstance(application, BrokenApplication):
            print(f"{name:<{width}}  cannot be loaded ({application.value}): {application.error}")
            continue
        default = " (default)" if name == DEFAULT_APPLICATION else ""
        print(f"{name:<{width}}  {application.summary()}{default}")
    print("\nRun one with: dragon-campaign run --app NAME (--help-app lists its parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
