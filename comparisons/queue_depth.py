"""Queue depth: a million waiting tasks in DragonQueues, against EMEWS EQSQL on PostgreSQL in the same run.

    PATH=$PWD/.venv/bin:$PATH dragon comparisons/queue_depth.py [--tasks 1000000 100000] [--eqsql-tasks 100000]

For each system and size N, nobody consuming: submit N no-op tasks with integer priorities drawn at random
from 0-99 (submit rate; memory per waiting task: the steering process's resident memory for DragonQueues,
the database's size for EQSQL), change the priority of N/10 tasks drawn at random (``update_priority``;
EQSQL's ``update_priorities``), cancel N/10 others (``cancel``; ``cancel_tasks``), then take every task
left the way each system's dispatcher does and check the order: highest priority first, then first
submitted (DragonQueues: the dispatcher's ``peek``/``pop``, one task at a time; EQSQL: ``query_task`` in
batches of 1,000, the way its worker pools pop, each batch compared as a set since PostgreSQL returns a
batch's rows in no set order). Waiting tasks live in the steering process, so plain ``python`` runs it too.

EQSQL runs on a private PostgreSQL server started here (``initdb`` + ``pg_ctl``, Unix socket only, as the
``postgres`` user when run as root); it submits each task in a transaction of its own, so its default size
is smaller (``--eqsql-tasks``), and the table runs DragonQueues at that size too.
Writes <output>/queue_depth.md, .csv and .png.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

from common import provenance, pyplot, write_csv, write_report

PRIORITIES = 100
POP_BATCH = 1000


def noop(x: Any) -> Any:
    return x


def plan(n: int, seed: int) -> tuple[list[int], dict[int, int], list[int]]:
    """The same work for every system: priorities, new priorities of N/10 tasks, and N/10 others to cancel."""
    rng = random.Random(seed)
    priorities = [rng.randrange(PRIORITIES) for _ in range(n)]
    chosen = rng.sample(range(n), 2 * (n // 10))
    updates = {i: rng.randrange(PRIORITIES) for i in chosen[: n // 10]}
    return priorities, updates, chosen[n // 10:]


def expected_order(priorities: list[int], updates: dict[int, int], cancelled: list[int]) -> list[int]:
    final = list(priorities)
    for i, p in updates.items():
        final[i] = p
    gone = set(cancelled)
    return sorted((i for i in range(len(final)) if i not in gone), key=lambda i: (-final[i], i))


def rss() -> int:
    with open("/proc/self/statm") as fp:
        return int(fp.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_dragon_queues(n: int, seed: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from dragon_campaign import DragonQueues

    priorities, updates, cancelled = plan(n, seed)
    queues = DragonQueues()
    gc.collect()
    before = rss()
    start = time.perf_counter()
    ids = [queues.send_inputs(i, method="noop", priority=p) for i, p in enumerate(priorities)]
    submit_s = time.perf_counter() - start
    gc.collect()
    per_task = (rss() - before) / n
    start = time.perf_counter()
    changed = queues.update_priority([ids[i] for i in updates], list(updates.values()))
    update_s = time.perf_counter() - start
    start = time.perf_counter()
    gone = queues.cancel([ids[i] for i in cancelled])
    cancel_s = time.perf_counter() - start
    assert len(changed) == len(updates) and len(gone) == len(cancelled)
    index = {task_id: i for i, task_id in enumerate(ids)}
    start = time.perf_counter()
    taken = []
    with queues.waiting_tasks() as waiting:  # what the dispatcher does for each task it hands out
        while (task := waiting.peek(["noop"])) is not None:
            waiting.pop(task.task_id)
            taken.append(index[task.task_id])
    drain_s = time.perf_counter() - start
    return {"submit_per_s": n / submit_s, "bytes_per_task": per_task, "update_s": update_s, "cancel_s": cancel_s,
            "drain_per_s": len(taken) / drain_s, "order_exact": taken == expected_order(priorities, updates, cancelled)}


def postgres_binary(name: str) -> str:
    """A PostgreSQL server program: on the PATH, or where Debian's postgresql package puts it."""
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)), None)
    if found is None:
        sys.exit(f"{name} not found: install PostgreSQL (apt-get install postgresql) or run with --eqsql-tasks 0")
    return str(found)


@contextmanager
def postgres() -> Iterator[dict[str, Any]]:
    """A private PostgreSQL server with EQSQL's schema; yields init_task_queue's arguments."""
    import eqsql  # noqa: F401  (its schema file)

    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    as_owner: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="eqsql-"))
    os.chmod(folder, 0o777)
    data, port = folder / "data", 54329
    subprocess.run([*as_owner, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses='' -c fsync=off -c synchronous_commit=off"
    subprocess.run([*as_owner, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"], check=True, capture_output=True)
    try:
        psql = ["psql", "-h", str(folder), "-p", str(port), "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1"]
        subprocess.run([*psql, "-c", "create database eqsql"], check=True, capture_output=True)
        schema = Path(eqsql.__file__).parent / "workflow.sql"
        subprocess.run([*psql, "-d", "eqsql", "-f", str(schema)], check=True, capture_output=True)
        yield {"host": str(folder), "user": "postgres", "port": port, "db_name": "eqsql"}
    finally:
        subprocess.run([*as_owner, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def measure_eqsql(n: int, seed: int) -> dict[str, Any]:
    import getpass

    os.environ.setdefault("USER", getpass.getuser())  # eqsql reads it when imported
    from eqsql.task_queues import local_queue

    priorities, updates, cancelled = plan(n, seed)
    with postgres() as database:
        queue = local_queue.init_task_queue(**database)

        def size() -> int:
            with queue.db.conn.cursor() as cursor:
                cursor.execute("select pg_database_size('eqsql')")
                return int(cursor.fetchone()[0])

        before = size()
        start = time.perf_counter()
        futures = []
        for i, p in enumerate(priorities):
            status, future = queue.submit_task("queue-depth", 1, json.dumps({"x": i}), priority=p)
            if future is None:
                raise RuntimeError(f"EQSQL refused task {i}: {status}")
            futures.append(future)
        submit_s = time.perf_counter() - start
        per_task = (size() - before) / n
        start = time.perf_counter()
        _, changed = queue.update_priorities([futures[i] for i in updates], list(updates.values()))
        update_s = time.perf_counter() - start
        start = time.perf_counter()
        _, gone = queue.cancel_tasks([futures[i] for i in cancelled])
        cancel_s = time.perf_counter() - start
        assert len(changed) == len(updates) and len(gone) == len(cancelled), (len(changed), len(gone))
        index = {future.eq_task_id: i for i, future in enumerate(futures)}
        expected = expected_order(priorities, updates, cancelled)
        exact = True
        taken = 0
        start = time.perf_counter()
        while taken < len(expected):
            batch = queue.query_task(1, n=POP_BATCH, delay=0.01, timeout=30)
            batch = batch if isinstance(batch, list) else [batch]
            got = {index[item["eq_task_id"]] for item in batch}
            exact = exact and got == set(expected[taken:taken + len(batch)])
            taken += len(batch)
        drain_s = time.perf_counter() - start
        queue.close()
    return {"submit_per_s": n / submit_s, "bytes_per_task": per_task, "update_s": update_s, "cancel_s": cancel_s,
            "drain_per_s": taken / drain_s, "order_exact": exact}


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> Path:
    output = Path(args.output)
    fields = ["system", "tasks", "submit_per_s", "bytes_per_task", "update_s", "cancel_s", "drain_per_s", "order_exact"]
    write_csv(output / "queue_depth.csv", rows, fields)
    lines = ["# Queue depth: waiting tasks, re-prioritization and cancellation", "", *provenance(),
             f"- Versions: dragon-campaign {version('dragon-campaign')}, eqsql {version('eqsql')}, PostgreSQL "
             f"{subprocess.run([postgres_binary('postgres'), '--version'], capture_output=True, text=True).stdout.split()[2]} (fsync off, "
             "Unix socket), psycopg2 " + version("psycopg2-binary"),
             "- Method: N no-op tasks with random integer priorities 0-99, nobody consuming; update_priority on N/10 "
             "tasks drawn at random, cancel on N/10 others; then every task left taken the way the dispatcher takes them "
             f"(DragonQueues: one at a time; EQSQL: query_task in batches of {POP_BATCH}, compared as sets) and the order "
             "checked against highest priority first, then first submitted. Memory: resident memory of the steering process "
             "(DragonQueues) or growth of the database (EQSQL), per waiting task.", "",
             "| System | Waiting tasks | Submit (tasks/s) | Memory per waiting task | update_priority on N/10 | cancel on N/10 "
             "| Dispatch order (tasks/s taken) | Order exact |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['system']} | {row['tasks']:,} | {row['submit_per_s']:,.0f} | {row['bytes_per_task']:,.0f} B "
                     f"| {row['update_s']:.3f} s | {row['cancel_s']:.3f} s | {row['drain_per_s']:,.0f} | {'yes' if row['order_exact'] else 'NO'} |")
    big = [row for row in rows if row["system"].startswith("DragonQueues") and row["tasks"] >= 1_000_000]
    if big:
        row = big[0]
        lines += ["", f"Target: update_priority on 100,000 of 1,000,000 waiting tasks under 1 s: {row['update_s']:.3f} s "
                  f"({'met' if row['update_s'] < 1 else 'missed'})."]
    eqsql_rows = [row for row in rows if row["system"].startswith("EQSQL")]
    if eqsql_rows:
        row = eqsql_rows[0]
        lines.append(f"EQSQL submits each task in a transaction of its own ({row['submit_per_s']:,.0f} tasks/s here): a million "
                     f"would take {1e6 / row['submit_per_s'] / 60:.0f} minutes, so it runs at {row['tasks']:,} tasks, and "
                     "DragonQueues at that size too.")
    return write_report(output, "queue_depth", lines, lambda path: plot(rows, path))


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    labels = [f"{row['system']}\n{row['tasks']:,}" for row in rows]
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    for axis, key, title in zip(axes, ["submit_per_s", "update_s", "cancel_s"],
                                ["Submit (tasks/s, log)", "update_priority on N/10 (s, log)", "cancel on N/10 (s, log)"], strict=True):
        axis.bar(range(len(rows)), [row[key] for row in rows], color=["#1f77b4" if "Dragon" in row["system"] else "#ff7f0e" for row in rows])
        axis.set_xticks(range(len(rows)), labels, fontsize=7)
        axis.set_yscale("log")
        axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=[1_000_000], help="sizes for DragonQueues (default 1000000)")
    parser.add_argument("--eqsql-tasks", type=int, default=100_000, help="size for EQSQL, also run for DragonQueues (0: skip EQSQL)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="results", help="folder for the .md, .csv and .png (default results/)")
    args = parser.parse_args()
    sizes = sorted(set(args.tasks) | ({args.eqsql_tasks} if args.eqsql_tasks else set()), reverse=True)
    rows = []
    for n in sizes:
        print(f"DragonQueues, {n:,} tasks ...", flush=True)
        rows.append({"system": "DragonQueues (dragon_campaign)", "tasks": n, **measure_dragon_queues(n, args.seed)})
        print(json.dumps(rows[-1]), flush=True)
    if args.eqsql_tasks:
        print(f"EQSQL + PostgreSQL, {args.eqsql_tasks:,} tasks ...", flush=True)
        rows.append({"system": "EQSQL + PostgreSQL", "tasks": args.eqsql_tasks, **measure_eqsql(args.eqsql_tasks, args.seed)})
        print(json.dumps(rows[-1]), flush=True)
    print(report(rows, args).read_text())


if __name__ == "__main__":
    main()
