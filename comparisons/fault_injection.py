"""Fault-injection table: each fault, injected at random moments of a small real campaign, and which
invariants held (see comparisons/faults.py for the faults and the invariants).

    python comparisons/fault_injection.py [--tries 10] [--faults NAME ...] [--output results/]

Runs outside the Dragon runtime: every try starts its own (``bash run.sh`` in a pseudo-terminal), one at a
time. Writes fault_injection.md (the table, with machine, date, versions and command) and
fault_injection.csv (one row per try) into --output; the work directories of failed tries are kept.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import shutil
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from common import Steps, commit, machine_description, write_csv
from faults import FAULTS, INVARIANTS, try_fault


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=10, help="tries per fault (default 10)")
    parser.add_argument("--faults", nargs="+", choices=sorted(FAULTS), metavar="NAME", help="only these faults (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random moments (try i of the k-th fault uses seed + 1000 k + i)")
    parser.add_argument("--output", type=Path, default=Path("results"), help="where the table goes (default results/)")
    parser.add_argument("--keep-others", action="store_true",
                        help="keep the rows of faults not run now from the table already in --output (each row names its commit)")
    args = parser.parse_args()
    if args.tries < 1:
        parser.error("--tries must be at least 1")
    names = args.faults or list(FAULTS)
    args.output.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="fault-injection-"))
    rows = kept_rows(args.output, names) if args.keep_others else []
    code = commit()
    steps = Steps(len(names) * args.tries)
    for index, name in enumerate(names):
        for attempt in range(args.tries):
            workdir = scratch / f"{name.replace(' ', '_')}-{attempt}"
            outcome = try_fault(name, workdir, args.seed + 1000 * index + attempt)
            ok = all(outcome.held.values())
            rows.append({"fault": name, "try": attempt + 1, "what": outcome.what, "exit_status": outcome.exit_status,
                         "resume_status": "" if outcome.resumed_status is None else outcome.resumed_status,
                         "seconds_to_exit": round(outcome.seconds_to_exit, 1),
                         **{invariant: outcome.held.get(invariant, "") for invariant in INVARIANTS},
                         "details": "; ".join(outcome.details), "commit": code})
            steps.done(f"{name} #{attempt + 1}: {outcome.what}; exit {outcome.exit_status}"
                       f"{'' if outcome.resumed_status is None else f', resume {outcome.resumed_status}'}; "
                       f"{'all invariants held' if ok else 'FAILED: ' + '; '.join(outcome.details)}")
            if ok:
                shutil.rmtree(workdir, ignore_errors=True)
    write_csv(args.output / "fault_injection.csv", rows)
    (args.output / "fault_injection.md").write_text(report(rows, [name for name in FAULTS if any(r["fault"] == name for r in rows)], args))
    failed = [row for row in rows if not all(row[i] in (True, "") for i in INVARIANTS)]
    print(f"{len(rows) - len(failed)} of {len(rows)} tries held every invariant; table in {args.output / 'fault_injection.md'}"
          + (f"; failed tries kept in {scratch}" if failed else ""))
    if not failed:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


def kept_rows(output: Path, rerun: list[str]) -> list[dict]:
    """Rows of the other faults from the table in ``output`` (a row without a commit gets the one its table named)."""
    path = output / "fault_injection.csv"
    if not path.exists():
        return []
    header = (output / "fault_injection.md").read_text() if (output / "fault_injection.md").exists() else ""
    named = next((line.split("commit", 1)[1].strip() for line in header.splitlines() if line.startswith("- Code: commit")), "unknown")
    rows = []
    for row in csv.DictReader(open(path)):
        if row["fault"] in rerun:
            continue
        for invariant in INVARIANTS:
            row[invariant] = {"True": True, "False": False}.get(row[invariant], "")
        row["seconds_to_exit"] = float(row["seconds_to_exit"])
        row["commit"] = row.get("commit") or named
        rows.append(row)
    return rows


def report(rows: list[dict], names: list[str], args: argparse.Namespace) -> str:
    lines = [
        "# Fault injection",
        "",
        "A small molecular-design campaign (12 simulations, 2 CPU workers, 1 learning worker, `bash run.sh` in a",
        "pseudo-terminal, a fresh Dragon runtime per run), each fault injected at a random moment; where the run",
        "checkpointed (exit status 3) it is resumed with `--resume` and checked again. Invariants: the run ends",
        "within 120 s of the fault (*bounded*), no process of its runtime and no `/dev/shm` segment created during",
        "it is left once the command has returned, every line of results.jsonl parses with no duplicate task id,",
        "and a resumed run logs each of the 12 simulations exactly once. Cells: tries in which the invariant held",
        "/ tries (resume: / tries that checkpointed).",
        "",
        f"- Machine: {machine_description()}",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Versions: dragonhpc {version('dragonhpc')}, torch {version('torch')}, Python {sys.version.split()[0]}",
        f"- Code: commit {commit()}" + (" (rows of faults not run by this command: the commit in their row)" if args.keep_others else ""),
        f"- Command: `python {shlex.join(sys.argv)}`",
        "",
        "| fault | tries | exit statuses | " + " | ".join(INVARIANTS) + " | median s to exit | commit |",
        "|---|---|---|" + "---|" * len(INVARIANTS) + "---|---|",
    ]
    for name in names:
        tries = [row for row in rows if row["fault"] == name]
        statuses = Counter(str(row["exit_status"]) for row in tries)
        cells = []
        for invariant in INVARIANTS:
            applicable = [row for row in tries if row[invariant] != ""]
            cells.append(f"{sum(bool(row[invariant]) for row in applicable)}/{len(applicable)}")
        seconds = sorted(row["seconds_to_exit"] for row in tries)
        lines.append(f"| {name} | {len(tries)} | {', '.join(f'{s}: {n}' for s, n in sorted(statuses.items()))} | "
                     + " | ".join(cells) + f" | {seconds[len(seconds) // 2]:.1f} | {', '.join(sorted({row['commit'] for row in tries}))} |")
    bit = [row for row in rows if "OOM kill" in row["what"]]
    if bit:
        killed = sum(not row["what"].endswith(": 0 OOM kill(s) in the cgroup") for row in bit)
        lines += ["", f"The memory limit OOM-killed a worker in {killed} of {len(bit)} tries (in the others the run "
                  "ended before its workers touched that much more memory)."]
    failures = [row for row in rows if row["details"]]
    lines += ["", "Exit status 0: the campaign finished (the fault came too late, or it survived it); 3: checkpointed;",
              "1: the campaign failed (reported, results kept); 130: stopped during set-up, nothing to checkpoint.", ""]
    if failures:
        lines += ["## Tries with findings", ""]
        lines += [f"- {row['fault']} #{row['try']} ({row['what']}): {row['details']}" for row in failures]
    else:
        lines.append("Every invariant held in every try.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
