"""Hard-kill table: each campaign SIGKILLed at random moments (while it runs, during its resume, while its
thinker's snapshot is written), resumed, and which invariants held (see comparisons/hard_kill.py).

    python comparisons/hard_kill_table.py [--tries 10] [--campaigns NAME ...] [--output results/]

Runs outside the Dragon runtime: every run and resume starts its own (``bash run.sh`` in a pseudo-terminal),
one at a time. Writes hard_kill.md (the table, with machine, date, versions and command) and hard_kill.csv
(one row per try) into --output; the work directories of failed tries are kept.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from common import Steps, commit, machine_description, write_csv
from hard_kill import HARD_KILL_INVARIANTS, KINDS, TRIES, try_hard_kill


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=10, help="tries of each campaign and phase (default 10)")
    parser.add_argument("--campaigns", nargs="+", choices=sorted(KINDS), metavar="NAME", help="only these campaigns (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random moments (try i of the k-th kind uses seed + 1000 k + i)")
    parser.add_argument("--output", type=Path, default=Path("results"), help="where the table goes (default results/)")
    args = parser.parse_args()
    if args.tries < 1:
        parser.error("--tries must be at least 1")
    kinds = [(campaign, phase) for campaign, phase in TRIES if not args.campaigns or campaign in args.campaigns]
    scratch = Path(tempfile.mkdtemp(prefix="hard-kill-"))
    code, rows = commit(), []
    steps = Steps(len(kinds) * args.tries)
    for index, (campaign, phase) in enumerate(kinds):
        for attempt in range(args.tries):
            workdir = scratch / f"{index}-{attempt}"
            outcome = try_hard_kill(campaign, phase, workdir, args.seed + 1000 * index + attempt)
            ok = all(outcome.held.values())
            rows.append({"campaign": campaign, "phase": phase, "try": attempt + 1, "what": outcome.what,
                         "resume_status": outcome.resumed_status, **outcome.held, "details": "; ".join(outcome.details), "commit": code})
            steps.done(f"{campaign}, {phase} #{attempt + 1}: {outcome.what}; "
                       f"{'all invariants held' if ok else 'FAILED: ' + '; '.join(outcome.details)}")
            if ok:
                shutil.rmtree(workdir, ignore_errors=True)
    args.output.mkdir(parents=True, exist_ok=True)
    write_csv(args.output / "hard_kill.csv", rows)
    (args.output / "hard_kill.md").write_text(report(rows, kinds, args, code))
    failed = [row for row in rows if not all(row[i] for i in HARD_KILL_INVARIANTS)]
    print(f"{len(rows) - len(failed)} of {len(rows)} tries held every invariant; table in {args.output / 'hard_kill.md'}"
          + (f"; failed tries kept in {scratch}" if failed else ""))
    if not failed:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


def report(rows: list[dict], kinds: list[tuple[str, str]], args: argparse.Namespace, code: str) -> str:
    lines = [
        "# Hard kills",
        "",
        "Each campaign starts as a user starts it (`bash run.sh` in a pseudo-terminal, a fresh Dragon runtime per run)",
        "and gets SIGKILL (the Dragon launcher's process group, then the command's: the head process, its workers and",
        "the runtime's services die at once, as under the OOM killer, a lost node or PBS's kill at walltime) at a",
        "random moment of its first half; then `bash run.sh --resume RUN_DIR`. *During the resume*: the first resume",
        "is killed the same way and a second one finishes. *While a snapshot is written*: a thinker with 48 MiB of",
        "state, killed within 30 ms of taking a snapshot; the journal must show the snapshot never committed.",
        "Invariants (comparisons/hard_kill.py): the kill fired in its phase and the journal says the job was killed;",
        "no process and no `/dev/shm` segment of the runs left (after the warden, which outlives the kill);",
        "results.jsonl parses with no duplicate task id; the resume exits 0 with every task of the budget logged",
        "exactly once; every result logged before the kill is still there. Cells: tries in which it held / tries.",
        "",
        f"- Machine: {machine_description()}",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Versions: dragonhpc {version('dragonhpc')}, torch {version('torch')}, Python {sys.version.split()[0]}",
        f"- Code: commit {code}",
        f"- Command: `python {shlex.join(sys.argv)}`",
        "",
        "| campaign | kill | tries | " + " | ".join(HARD_KILL_INVARIANTS) + " |",
        "|---|---|---|" + "---|" * len(HARD_KILL_INVARIANTS),
    ]
    for campaign, phase in kinds:
        tries = [row for row in rows if row["campaign"] == campaign and row["phase"] == phase]
        cells = [f"{sum(bool(row[invariant]) for row in tries)}/{len(tries)}" for invariant in HARD_KILL_INVARIANTS]
        lines.append(f"| {campaign} | {phase} | {len(tries)} | " + " | ".join(cells) + " |")
    findings = [row for row in rows if row["details"]]
    if findings:
        lines += ["", "## Tries with findings", ""]
        lines += [f"- {row['campaign']}, {row['phase']} #{row['try']} ({row['what']}): {row['details']}" for row in findings]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
