"""A run's report: one self-contained HTML page made from what the run directory holds.

    python -m dragon_campaign.report runs/<run-id>          # writes runs/<run-id>/report.html

The page needs no server and no network (open it after ``scp``): the plots are Plotly figures with
Plotly's JavaScript inlined. It shows the worker-utilization timeline (one row per worker, one bar per
task, coloured by method), each worker's busy fraction, task durations per method, results over time and
the application's own progress (``progress.csv``: best value found, molecules above the threshold),
failures with their reasons, the summary, the configuration and the versions. The launcher writes it at
the end of every run, also a failed or interrupted one; ``--dashboard PORT`` serves it live while the
campaign runs (``dragon_campaign.dashboard``).
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import math
import platform
import socket
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dragon_campaign.models import Result
from dragon_campaign.runs import read_results
from dragon_campaign.timeline import busy_fractions, idle_while_tasks_wait, row_name, timed
from dragon_campaign.versions import installed_versions

REPORT_FILE = "report.html"
# Columns of an application's progress.csv that the report plots, against its time column
PROGRESS_SERIES = {"best_ip_ev": "Best IP found (eV)", "above_threshold": "Molecules above the threshold",
                   "best_value": "Best value found"}
TIME_COLUMNS = ("wall_s", "at_s")
FAILURES_SHOWN = 200


def write_report(run_dir: Path, live_refresh_s: float | None = None, plotly_src: str | None = None) -> Path:
    """Write ``<run_dir>/report.html`` and return its path."""
    path = run_dir / REPORT_FILE
    path.write_text(render(run_dir, live_refresh_s, plotly_src), encoding="utf-8")
    return path


def render(run_dir: Path, live_refresh_s: float | None = None, plotly_src: str | None = None) -> str:
    """The page. ``plotly_src``: a URL to load Plotly from (the live dashboard), else it is inlined;
    ``live_refresh_s``: reload the page this often (the live dashboard).
    """
    results = read_results(run_dir / "results.jsonl") if (run_dir / "results.jsonl").exists() else []
    summary = _json(run_dir / "summary.json")
    sections = [
        _section("Worker utilization", _utilization(results), "Each bar is a task's compute on a worker, coloured by method; "
                 "failed tasks are outlined in red."),
        _section("Busy fraction per worker", _busy(results), "Share of the campaign each worker spent computing, and "
                 "the share it sat idle while a task of a method its pool runs waited to be sent to a worker."),
        _section("Task durations per method", _durations(results), "Compute time of each task (seconds)."),
        _section("Results over time", _results_over_time(results), "Results received, per method."),
        *(_section(title, figure, "From the application's progress.csv.") for title, figure in _progress(run_dir)),
        _failures(results),
        _summary(summary),
        _text_section("Configuration", run_dir / "config.yaml"),
        _versions(),
    ]
    head = _header(run_dir, results, summary, live_refresh_s)
    script = f'<script src="{html.escape(plotly_src)}"></script>' if plotly_src else f"<script>{_plotly_js()}</script>"
    refresh = f'<meta http-equiv="refresh" content="{live_refresh_s:g}">' if live_refresh_s else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<title>{html.escape(run_dir.name)}: campaign report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} td, th {{ border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }}
pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }} .note {{ color: #666; font-size: 0.9em; }}
</style>{script}</head>
<body>
{head}
{"".join(section for section in sections if section)}
</body></html>
"""


def _header(run_dir: Path, results: list[Result], summary: dict[str, Any], live_refresh_s: float | None) -> str:
    failed = sum(not r.success for r in results)
    state = "running (this page reloads itself)" if live_refresh_s else ("finished" if summary else "did not finish (no summary.json)")
    if (run_dir / "checkpoint" / "campaign.pkl").exists():
        state = "checkpointed: resume it with --resume"
    span = ""
    if results:
        first = min(r.timestamp.created for r in results)
        last = max(r.timestamp.result_received for r in results if math.isfinite(r.timestamp.result_received))
        wall = summary.get("wall_s")
        campaign = f"; campaign wall time {wall:.1f} s" if isinstance(wall, (int, float)) else ""
        span = f"<li>From {_time(first)} to {_time(last)} ({last - first:.1f} s{campaign})</li>"
    return (f"<h1>Campaign report: {html.escape(str(summary.get('app', run_dir.name)))}</h1>"
            f"<ul><li>Run directory: <code>{html.escape(str(run_dir.resolve()))}</code></li><li>State: {state}</li>"
            f"<li>Results: {len(results)} ({failed} failed)</li>{span}"
            f"<li>Report made {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC on {html.escape(socket.gethostname())}</li></ul>")


def _utilization(results: list[Result]) -> Any:
    import plotly.graph_objects as go

    ran = timed(results)
    if not ran:
        return None
    start = min(r.timestamp.compute_started for r in ran)
    rows = sorted({row_name(r) for r in ran})
    figure = go.Figure()
    for method in sorted({r.method for r in ran}):
        mine = [r for r in ran if r.method == method]
        figure.add_trace(go.Bar(
            name=method, orientation="h", y=[row_name(r) for r in mine],
            x=[r.timestamp.compute_ended - r.timestamp.compute_started for r in mine],
            base=[r.timestamp.compute_started - start for r in mine],
            marker={"line": {"color": ["red" if not r.success else "rgba(0,0,0,0)" for r in mine], "width": 1.5}},
            customdata=[[r.task_id, "ok" if r.success else "failed"] for r in mine],
            hovertemplate="%{y}<br>start %{base:.2f} s, %{x:.2f} s<br>task %{customdata[0]} (%{customdata[1]})<extra>" + method + "</extra>",
        ))
    figure.update_layout(barmode="overlay", height=160 + 24 * len(rows), xaxis_title="seconds since the first task started",
                         yaxis={"categoryorder": "array", "categoryarray": rows[::-1]})
    return figure


def _busy(results: list[Result]) -> Any:
    import plotly.graph_objects as go

    fractions = busy_fractions(results)
    if not fractions:
        return None
    idle = idle_while_tasks_wait(results)
    workers = list(fractions)
    figure = go.Figure([
        go.Bar(name="computing", x=[100 * fractions[w] for w in workers], y=workers, orientation="h",
               hovertemplate="%{y}: %{x:.1f} % computing<extra></extra>"),
        go.Bar(name="idle while a task it could run waited", x=[100 * idle.get(w, 0.0) for w in workers], y=workers,
               orientation="h", hovertemplate="%{y}: %{x:.1f} % idle while a task waited<extra></extra>"),
    ])
    figure.update_layout(barmode="group", height=180 + 40 * len(workers), yaxis={"autorange": "reversed"},
                         xaxis={"title": "% of the campaign (first task start to last task end)", "range": [0, 100]})
    return figure


def _durations(results: list[Result]) -> Any:
    import plotly.graph_objects as go

    ran = [r for r in results if r.success and math.isfinite(r.time.running)]
    if not ran:
        return None
    figure = go.Figure()
    for method in sorted({r.method for r in ran}):
        figure.add_trace(go.Box(name=method, y=[r.time.running for r in ran if r.method == method], boxpoints="outliers"))
    figure.update_layout(yaxis_title="seconds", showlegend=False, height=380)
    return figure


def _results_over_time(results: list[Result]) -> Any:
    import plotly.graph_objects as go

    received = [r for r in results if math.isfinite(r.timestamp.result_received)]
    if not received:
        return None
    start = min(r.timestamp.created for r in results)
    figure = go.Figure()
    by_method: dict[str, list[float]] = defaultdict(list)
    for r in received:
        by_method[r.method].append(r.timestamp.result_received - start)
    for method, times in sorted(by_method.items()):
        times.sort()
        figure.add_trace(go.Scatter(name=method, x=times, y=list(range(1, len(times) + 1)), mode="lines", line={"shape": "hv"}))
    figure.update_layout(xaxis_title="seconds since the first task was submitted", yaxis_title="results received", height=380)
    return figure


def _progress(run_dir: Path) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go

    path = run_dir / "progress.csv"
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fp:
        rows = list(csv.DictReader(fp))
    if not rows:
        return []
    time_column = next((c for c in TIME_COLUMNS if c in rows[0]), None)
    figures = []
    for column, title in PROGRESS_SERIES.items():
        if column not in rows[0]:
            continue
        points = [(float(row[time_column]) if time_column else i, float(row[column])) for i, row in enumerate(rows, 1) if row[column] not in ("", None)]
        if not points:
            continue
        figure = go.Figure(go.Scatter(x=[x for x, _ in points], y=[y for _, y in points], mode="lines+markers", line={"shape": "hv"}))
        figure.update_layout(xaxis_title="seconds since the campaign started" if time_column else "results", yaxis_title=title, height=360)
        figures.append((title, figure))
    return figures


def _failures(results: list[Result]) -> str:
    failed = [r for r in results if not r.success]
    if not failed:
        return "<h2>Failures</h2><p>None.</p>"
    rows = "".join(
        f"<tr><td><code>{html.escape(r.task_id)}</code></td><td>{html.escape(r.method)}</td>"
        f"<td>{html.escape(row_name(r) if r.worker_info and r.worker_info.pool else '-')}</td>"
        f"<td>{html.escape(r.failure_reason or '?')}</td></tr>" for r in failed[:FAILURES_SHOWN])
    more = f"<p class='note'>The first {FAILURES_SHOWN} of {len(failed)}; results.jsonl has them all.</p>" if len(failed) > FAILURES_SHOWN else ""
    return (f"<h2>Failures ({len(failed)})</h2><table><tr><th>Task</th><th>Method</th><th>Worker</th><th>Reason</th></tr>"
            f"{rows}</table>{more}")


def _summary(summary: dict[str, Any]) -> str:
    if not summary:
        return ""
    rows = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_short(value))}</td></tr>" for key, value in summary.items())
    return f"<h2>Summary (summary.json)</h2><table>{rows}</table>"


def _text_section(title: str, path: Path) -> str:
    if not path.exists():
        return ""
    return f"<h2>{title} ({path.name})</h2><pre>{html.escape(path.read_text(encoding='utf-8'))}</pre>"


def _versions() -> str:
    return (f"<h2>Versions</h2><p>Python {platform.python_version()} on {html.escape(platform.platform())}; "
            f"{html.escape(', '.join(installed_versions()))}</p>")


def _section(title: str, figure: Any, note: str) -> str:
    if figure is None:
        return ""
    figure.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 40}, template="plotly_white")
    return f"<h2>{title}</h2><p class='note'>{note}</p>" + figure.to_html(full_html=False, include_plotlyjs=False)


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 300 else text[:300] + " ..."


def _time(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def main(argv: list[str] | None = None) -> None:
    """Write a run directory's report (``python -m dragon_campaign.report RUN_DIR``)."""
    parser = argparse.ArgumentParser(prog="python -m dragon_campaign.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory (holding results.jsonl)")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        parser.error(f"{args.run_dir}: no such directory")
    print(write_report(args.run_dir))


if __name__ == "__main__":
    main()
