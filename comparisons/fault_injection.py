"""Fault-injection table: each fault in each phase where it applies, injected into a small real campaign,
and which invariants held (see comparisons/faults.py for the invariants, fault_actions.py for the faults,
fault_phases.py for the phases).

    python comparisons/fault_injection.py [--tries 10] [--faults NAME ...] [--phases NAME ...] [--continue] [--output results/]

Runs outside the Dragon runtime: every run starts its own (``bash run.sh`` in a pseudo-terminal), one at a
time. Writes fault_injection.md (the table, with machine, date, versions and command), fault_injection.csv
(one row per try, every try) and fault_injection_logs.tar.xz (every try's output: the run, its resume or
rerun) into --output. The whole table takes hours: with ``--continue`` an interrupted invocation goes on
where it stopped, keeping the tries already in fault_injection.csv, only on the same commit, unchanged.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import tarfile
import tempfile
from collections import Counter
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from common import Steps, commit, machine_description, write_csv
from fault_actions import CELLS, FAULTS
from fault_phases import PHASES
from faults import INVARIANTS, try_fault

FIELDS = ["fault", "phase", "try", "what", "exit_status", "carried_on", "seconds_to_exit", *INVARIANTS, "swept", "details", "commit"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=10, help="tries of each fault in each phase (default 10)")
    parser.add_argument("--faults", nargs="+", choices=sorted(FAULTS), metavar="NAME", help="only these faults (default: all)")
    parser.add_argument("--phases", nargs="+", choices=list(PHASES), metavar="NAME", help="only these phases (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random moments (try i of the k-th cell uses seed + 1000 k + i)")
    parser.add_argument("--continue", dest="carry_on", action="store_true",
                        help="keep the tries already in --output's fault_injection.csv (same commit, no local changes) and run the rest")
    parser.add_argument("--output", type=Path, default=Path("results"), help="where the table goes (default results/)")
    args = parser.parse_args()
    if args.tries < 1:
        parser.error("--tries must be at least 1")
    code = commit()
    cells = [(fault, phase) for fault, phase in CELLS if (not args.faults or fault in args.faults) and (not args.phases or phase in args.phases)]
    args.output.mkdir(parents=True, exist_ok=True)
    rows = earlier_rows(args.output, code) if args.carry_on else []
    done = {(row["fault"], row["phase"], int(row["try"])) for row in rows}
    logs = args.output / "fault_injection_logs.tar.xz"
    kept_logs = read_logs(logs) if args.carry_on else {}
    steps = Steps(len(cells) * args.tries - len(done))
    with tempfile.TemporaryDirectory(prefix="fault-injection-") as scratch:
        for index, (fault, phase) in enumerate(cells):
            for attempt in range(args.tries):
                if (fault, phase, attempt + 1) in done:
                    continue
                name = f"{fault}-{phase}-{attempt + 1}".replace(" ", "_")
                workdir = Path(scratch) / name
                outcome = try_fault(fault, phase, workdir, args.seed + 1000 * index + attempt)
                rows.append({"fault": fault, "phase": phase, "try": attempt + 1, "what": outcome.what, "exit_status": outcome.exit_status,
                             "carried_on": " ".join(str(status) for status in outcome.finishing_statuses),
                             "seconds_to_exit": round(outcome.seconds_to_exit, 1), **outcome.held,
                             "swept": len(outcome.swept), "details": "; ".join(outcome.details), "commit": code})
                kept_logs.update({f"{name}/{log.name}": log.read_bytes() for log in sorted(workdir.glob("*.log"))})
                ok = all(outcome.held.values())
                steps.done(f"{fault}, {phase} #{attempt + 1}: {outcome.what}; exit {outcome.exit_status}"
                           f"{f', then {outcome.finishing_statuses}' if outcome.finishing_statuses else ''}; "
                           f"{'all invariants held' if ok else 'FAILED: ' + '; '.join(outcome.details)}")
                write_csv(args.output / "fault_injection.csv", rows, FIELDS)  # after every try: --continue goes on from here
                write_logs(logs, kept_logs)
    (args.output / "fault_injection.md").write_text(report(rows, args, code))
    failed = [row for row in rows if not all(_held(row[invariant]) for invariant in INVARIANTS)]
    print(f"{len(rows) - len(failed)} of {len(rows)} tries held every invariant; table in {args.output / 'fault_injection.md'}")
    return 1 if failed else 0


def _held(value: object) -> bool:
    return value is True or value == "True"


def earlier_rows(output: Path, code: str) -> list[dict]:
    """The tries of an interrupted invocation on this very commit (none if the commit or the tree differs)."""
    path = output / "fault_injection.csv"
    if "local changes" in code or not path.exists():
        return []
    rows = list(csv.DictReader(open(path)))
    if not rows or "phase" not in rows[0] or any(row["commit"] != code for row in rows):
        return []
    for row in rows:
        for invariant in INVARIANTS:
            row[invariant] = _held(row[invariant])
        row["seconds_to_exit"] = float(row["seconds_to_exit"])
    return rows


def read_logs(path: Path) -> dict[str, bytes]:
    if not path.exists():
        return {}
    with tarfile.open(path, "r:xz") as archive:
        return {member.name: archive.extractfile(member).read() for member in archive.getmembers() if member.isfile()}  # type: ignore[union-attr]


def write_logs(path: Path, logs: dict[str, bytes]) -> None:
    import io

    partial = path.with_suffix(".partial")
    with tarfile.open(partial, "w:xz") as archive:
        for name, data in sorted(logs.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    partial.replace(path)


def report(rows: list[dict], args: argparse.Namespace, code: str) -> str:
    lines = [
        "# Fault injection",
        "",
        "A small molecular-design campaign (12 simulations, retraining every 4, 2 CPU workers, `bash run.sh` in a",
        "pseudo-terminal, a fresh Dragon runtime per run). Each fault is injected in a named phase, read from what",
        "the run writes (its journal, its `checkpoint.partial/`, whether it is alive; comparisons/fault_phases.py):",
        "*set-up* (no task finished yet), *after the first result*, *during training* (a retraining in flight),",
        "*during a checkpoint write* (the run checkpoints itself at `--stop-after`), *during shutdown* (the",
        "budget's last simulation has finished: the campaign winds down, the job comes down). The campaign is",
        "then carried to its end as a user would (`--resume` where the run directory says it can, else the same command again). Invariants",
        "(comparisons/faults.py): *fired in phase* (the phase held before and after the fault, and the fault",
        "found what it acts on); *bounded* (the run ended within 120 s); *no process left* and *no segment left*",
        "once each command returned; *nothing swept* (the launcher's sweeper had nothing to kill or remove; after a",
        "SIGKILL of the whole job its warden is the only one left to clean, so its work there is not counted, only",
        "shown in *swept*); *results intact* (results.jsonl parses, no task id twice, no line seen while it ran",
        "lost); *complete* (each of the 12 simulations logged exactly once at the end). Cells: tries in which it",
        "held / tries. Every try's output: fault_injection_logs.tar.xz.",
        "",
        f"- Machine: {machine_description()}",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Versions: dragonhpc {version('dragonhpc')}, torch {version('torch')}, Python {sys.version.split()[0]}",
        f"- Code: commit {code}",
        f"- Command: `python {shlex.join(sys.argv)}`",
        "",
        "| fault | phase | tries | exit statuses | " + " | ".join(INVARIANTS) + " | swept | median s to exit |",
        "|---|---|---|---|" + "---|" * len(INVARIANTS) + "---|---|",
    ]
    for fault, phase in CELLS:
        tries = [row for row in rows if row["fault"] == fault and row["phase"] == phase]
        if not tries:
            continue
        statuses = Counter(str(row["exit_status"]) for row in tries)
        cells = [f"{sum(_held(row[invariant]) for row in tries)}/{len(tries)}" for invariant in INVARIANTS]
        seconds = sorted(float(row["seconds_to_exit"]) for row in tries)
        swept = sum(int(row["swept"]) for row in tries)
        lines.append(f"| {fault} | {phase} | {len(tries)} | {', '.join(f'{s}: {n}' for s, n in sorted(statuses.items()))} | "
                     + " | ".join(cells) + f" | {swept} | {seconds[len(seconds) // 2]:.1f} |")
    bit = [row for row in rows if "OOM kill" in row["what"]]
    if bit:
        killed = sum(not row["what"].endswith(": 0 OOM kill(s) in the cgroup") for row in bit)
        lines += ["", f"The memory limit OOM-killed a worker in {killed} of {len(bit)} tries (in the others the run "
                  "ended before its workers touched that much more memory)."]
    lines += ["", "Exit status 0: the campaign finished (it survived the fault, or the fault came in shutdown); 3: checkpointed;",
              "1: the campaign failed (reported, results kept); 130: stopped during set-up, nothing to checkpoint;",
              "None: killed (SIGKILL of the job).", ""]
    failed = [row for row in rows if not all(_held(row[invariant]) for invariant in INVARIANTS)]
    if failed:
        lines += [f"## Tries where an invariant did not hold ({len(failed)} of {len(rows)})", ""]
        lines += [f"- {row['fault']}, {row['phase']} #{row['try']} ({row['what']}): "
                  + ", ".join(invariant for invariant in INVARIANTS if not _held(row[invariant])) + f": {row['details']}" for row in failed]
    else:
        lines.append(f"Every invariant held in every one of the {len(rows)} tries.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
