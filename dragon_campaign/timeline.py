"""Worker utilization after a campaign: which worker ran what, when, drawn from ``results.jsonl``.

    python -m dragon_campaign.timeline runs/<run-id>/results.jsonl [-o utilization.png]

One row per worker (grouped by pool, named by host and index; executor pools by site), one bar per task
from the start to the end of its compute, coloured by method: the picture of workers moving between
simulation and training as the resource counter re-tasks them. The launcher draws it into every run
directory as ``utilization.png``, beside ``utilization.csv`` (busy time per pool and method).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

from dragon_campaign.models import Result
from dragon_campaign.runs import read_results


def row_name(result: Result) -> str:
    """The worker that ran a result, as a row label: pool, index and host (executor pools: their site)."""
    info = result.worker_info
    assert info is not None
    if info.backend == "executor":
        return f"{info.pool} @ {info.site}"
    return f"{info.pool} #{info.worker} ({info.hostname})"


def timed(results: list[Result]) -> list[Result]:
    """Results that ran (compute start and end recorded)."""
    return [r for r in results if r.worker_info is not None and r.worker_info.pool
            and math.isfinite(r.timestamp.compute_started) and math.isfinite(r.timestamp.compute_ended)]


def pool_of(result: Result) -> str:
    """The pool that ran a result kept by ``timed``."""
    assert result.worker_info is not None and result.worker_info.pool is not None
    return result.worker_info.pool


def busy_seconds(results: list[Result]) -> dict[tuple[str, str], float]:
    """Compute seconds per (pool, method)."""
    busy: dict[tuple[str, str], float] = defaultdict(float)
    for r in timed(results):
        busy[(pool_of(r), r.method)] += r.timestamp.compute_ended - r.timestamp.compute_started
    return dict(busy)


def busy_fractions(results: list[Result]) -> dict[str, float]:
    """Each worker's share of the campaign's span (first compute start to last compute end) spent computing."""
    ran = timed(results)
    if not ran:
        return {}
    span = max(r.timestamp.compute_ended for r in ran) - min(r.timestamp.compute_started for r in ran)
    busy: dict[str, float] = defaultdict(float)
    for r in ran:
        busy[row_name(r)] += r.timestamp.compute_ended - r.timestamp.compute_started
    return {row: min(1.0, seconds / span) if span > 0 else 1.0 for row, seconds in sorted(busy.items())}


def idle_while_tasks_wait(results: list[Result]) -> dict[str, float]:
    """Each worker's share of the campaign's span spent idle while a task it could have run waited
    (submitted and not yet on a worker): time a better placement could have used. A worker could run a
    method if its pool ran that method at some point of the campaign; tasks the thinker has not submitted
    yet do not count.
    """
    ran = timed(results)
    if not ran:
        return {}
    start = min(r.timestamp.compute_started for r in ran)
    end = max(r.timestamp.compute_ended for r in ran)
    methods_of: dict[str, set[str]] = defaultdict(set)  # pool -> methods it ran
    for r in ran:
        methods_of[pool_of(r)].add(r.method)
    waiting = {method: _union([(max(r.timestamp.created, start), min(_handed_over(r), end)) for r in ran if r.method == method])
               for method in {r.method for r in ran}}
    busy: dict[str, list[tuple[float, float]]] = defaultdict(list)
    pool_of_row: dict[str, str] = {}
    for r in ran:  # a task on its way to a worker keeps that worker from being idle
        busy[row_name(r)].append((_handed_over(r), r.timestamp.compute_ended))
        pool_of_row[row_name(r)] = pool_of(r)
    span = end - start
    fractions = {}
    for row, intervals in sorted(busy.items()):
        could_run = _union([interval for method in methods_of[pool_of_row[row]] for interval in waiting[method]])
        fractions[row] = _length(_minus(could_run, _union(intervals))) / span if span > 0 else 0.0
    return fractions


def _handed_over(result: Result) -> float:
    """When the task left the waiting queue for a worker (its compute start if that was not recorded)."""
    dispatched = result.timestamp.dispatched
    return dispatched if math.isfinite(dispatched) else result.timestamp.compute_started


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for begin, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return merged


def _minus(intervals: list[tuple[float, float]], removed: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Parts of sorted disjoint ``intervals`` outside sorted disjoint ``removed``."""
    left: list[tuple[float, float]] = []
    for begin, end in intervals:
        for cut_begin, cut_end in removed:
            if cut_end <= begin or cut_begin >= end:
                continue
            if cut_begin > begin:
                left.append((begin, cut_begin))
            begin = max(begin, cut_end)
            if begin >= end:
                break
        if begin < end:
            left.append((begin, end))
    return left


def _length(intervals: list[tuple[float, float]]) -> float:
    return sum(end - begin for begin, end in intervals)


def plot_utilization(results: list[Result], path: Path, title: str = "Worker utilization") -> Path | None:
    """Draw the timeline into ``path`` (PNG); returns None when no task ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    ran = timed(results)
    if not ran:
        return None
    start = min(r.timestamp.compute_started for r in ran)
    rows = sorted({row_name(r) for r in ran})
    methods = sorted({r.method for r in ran})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    figure, axes = plt.subplots(figsize=(11, 1.2 + 0.35 * len(rows)))
    for r in ran:
        left = r.timestamp.compute_started - start
        axes.barh(rows.index(row_name(r)), r.timestamp.compute_ended - r.timestamp.compute_started, left=left,
                  height=0.8, color=colours[r.method], edgecolor="none" if r.success else "red")
    axes.set_yticks(range(len(rows)), rows, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("seconds since the first task started")
    axes.set_title(title)
    axes.legend(handles=[Patch(color=colours[m], label=m) for m in methods], loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_utilization(results_path: Path, directory: Path) -> Path | None:
    """``utilization.png`` and ``utilization.csv`` of a results file into ``directory``; None when no task ran."""
    results = read_results(results_path)
    picture = plot_utilization(results, directory / "utilization.png", title=f"Worker utilization: {results_path.parent.name}")
    if picture is None:
        return None
    with open(directory / "utilization.csv", "w", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(["pool", "method", "compute_s"])
        writer.writerows((pool, method, f"{seconds:.3f}") for (pool, method), seconds in sorted(busy_seconds(results).items()))
    return picture


def main(argv: list[str] | None = None) -> None:
    """Draw the timeline of a results file (``python -m dragon_campaign.timeline``)."""
    parser = argparse.ArgumentParser(prog="python -m dragon_campaign.timeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a results.jsonl file")
    parser.add_argument("-o", "--output", type=Path, help="folder for utilization.png and .csv (default: the file's folder)")
    args = parser.parse_args(argv)
    if not args.results.exists():
        parser.error(f"{args.results}: no such file")
    picture = write_utilization(args.results, args.output or args.results.parent)
    print(picture or f"{args.results}: no task ran; nothing to draw")


if __name__ == "__main__":
    main()
