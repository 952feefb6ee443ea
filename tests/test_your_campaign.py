"""A user's own campaign gets what the built-in apps get: the README's example, in a file outside the
repository, run through ``dragon-campaign run`` in a real terminal and stopped by a typed Ctrl-C; the same
file's bare-``dragon`` form; and an app package written by ``dragon-campaign new``, installed with
``pip install -e`` from its own folder, listed by ``dragon-campaign apps`` and passing its own test.

Each run starts a Dragon runtime of its own (tests/terminal.py, comparisons/faults.py check what it left)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import faults
import pytest
from common import outside_runtime_env
from terminal import CTRL_C

from dragon_campaign import launch

BIN = Path(sys.executable).parent
# The README's example with the load: 240 tasks of 0.25 s on 2 workers (about 30 s of work)
SQUARES = '''
import time

from dragon_campaign import BaseThinker, DragonQueues, DragonTaskServer, RunContext, agent, result_processor, run_campaign


def simulate(x: float) -> float:
    time.sleep(0.25)
    return x * x


class Squares(BaseThinker):
    @agent
    def submit(self):
        for x in range(240):
            self.queues.send_inputs(x, method="simulate", topic="simulate", priority=x)

    @result_processor(topic="simulate")
    def receive(self, result):
        print(result.args[0], "squared is", result.value, "on", result.worker_info.hostname, flush=True)


def campaign(run: RunContext):
    queues = DragonQueues(topics=["simulate"])
    server = DragonTaskServer([simulate], queues, pools=run.pools, run_dir=run.run_dir)
    return Squares(queues), server


if __name__ == "__main__":  # the bare `dragon squares.py` form
    import sys

    from dragon_campaign import WorkerPool

    queues = DragonQueues(topics=["simulate"])
    server = DragonTaskServer([simulate], queues, pools={"cpu": WorkerPool(workers=2)}, run_dir=sys.argv[1])
    run_campaign(Squares(queues), server)
'''
CTRL_C_AT_S = 12.0
ENDS_WITHIN_S = 60.0


def results_logged(run_dir: Path) -> int:
    path = run_dir / "results.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def ctrl_c_after(run: faults.Run, seconds: float) -> float:
    """Type Ctrl-C ``seconds`` after the start (checking that results came by then); returns when it was typed."""
    deadline = run.started + seconds
    while time.monotonic() < deadline and run.terminal.process.poll() is None:
        run.watch()
        time.sleep(0.1)
    assert run.terminal.process.poll() is None, run.terminal.output()[-3000:]
    assert run.runtime_processes(), "no runtime to stop"
    run.terminal.type(CTRL_C)
    return time.monotonic()


def assert_left_nothing(run: faults.Run) -> None:
    details: list[str] = []
    assert all(faults.check_leftovers(run, details).values()), details
    assert faults.results_intact(run.run_dir, details), details


@pytest.fixture
def squares(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"  # outside the repository: nothing of it is on the path but what the command adds
    folder.mkdir()
    path = folder / "squares.py"
    path.write_text(SQUARES)
    return path


def test_ctrl_c_in_a_terminal_stops_a_users_campaign_cleanly(tmp_path, squares):
    run_dir = tmp_path / "run"
    run = faults.start([str(BIN / "dragon-campaign"), "run", str(squares), "--workers", "2", "--run-dir", str(run_dir),
                        "--progress-interval", "0"], run_dir, tmp_path / "run.log")
    typed = ctrl_c_after(run, CTRL_C_AT_S)
    status = run.wait(ENDS_WITHIN_S)
    output = run.terminal.output()
    assert status == 130, output[-3000:]  # the documented status of a campaign stopped without a checkpoint
    assert time.monotonic() - typed < ENDS_WITHIN_S
    assert "KeyboardInterrupt - going to teardown" not in output, "Dragon's launcher took the Ctrl-C"
    assert_left_nothing(run)
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    done = [r for r in results if r["success"]]
    assert 10 <= len(done) < 240, f"{len(done)} results by the Ctrl-C at {CTRL_C_AT_S:g} s"
    assert all(math.isqrt(r["value"]) ** 2 == r["value"] for r in done)
    assert len({r["task_id"] for r in results}) == len(results) == 240, "every task logged once: done, or failed by the stop"
    assert (run_dir / "report.html").stat().st_size > 0
    assert "squares.py" in (run_dir / "config.yaml").read_text()


def test_a_users_campaign_runs_to_its_end_with_its_summary(tmp_path, squares):
    run_dir = tmp_path / "run"
    squares.write_text(squares.read_text().replace("range(240)", "range(12)").replace("time.sleep(0.25)", "pass"))
    completed = subprocess.run([str(BIN / "dragon-campaign"), "run", str(squares), "--workers", "2", "--run-dir", str(run_dir),
                                "--progress-interval", "0"], env=outside_runtime_env(), capture_output=True, text=True,
                               timeout=300, stdin=subprocess.DEVNULL)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["results"], summary["succeeded"], summary["results_by_topic"]) == (12, 12, {"simulate": 12})
    assert "121 squared is 121" not in completed.stdout and "11 squared is 121" in completed.stdout
    refused = subprocess.run([str(BIN / "dragon-campaign"), "run", str(squares), "--stop-after", "5", "--run-dir",
                              str(tmp_path / "again")], env=outside_runtime_env(), capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "Squares cannot be checkpointed" in refused.stderr, refused.stderr[-2000:]


def test_ctrl_c_in_a_terminal_under_a_bare_dragon_leaves_nothing(tmp_path, squares):
    """What Dragon users type: an interactive shell runs `dragon squares.py` as a job of the terminal."""
    run_dir = tmp_path / "run"
    shell = ["bash", "--norc", "-i", "-c", f"{BIN / 'dragon'} {squares} {run_dir}; echo exit status $?"]
    run = faults.start(shell, run_dir, tmp_path / "run.log")
    typed = ctrl_c_after(run, CTRL_C_AT_S)
    assert run.wait(ENDS_WITHIN_S) is not None, run.terminal.output()[-3000:]
    output = run.terminal.output()
    assert time.monotonic() - typed < ENDS_WITHIN_S
    assert "KeyboardInterrupt - going to teardown" not in output, "Dragon's launcher took the Ctrl-C"
    assert "Received SIGINT: stopping the campaign" in output, output[-3000:]
    launcher = run.runtime_group()

    def wardens() -> list[int]:
        return [pid for pid in faults.all_pids() if f"--warden {launcher} ".encode() in faults.cmdline(pid).replace(b"\0", b" ")]

    assert wardens(), "no warden watches the bare runtime"
    deadline = time.monotonic() + launch.ORPHAN_GRACE_S + 15  # the warden's look after the launcher exited
    while (run.alive() or run.new_segments() or wardens()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not wardens(), "the warden is still running"
    assert_left_nothing(run)
    assert 10 <= sum(json.loads(line)["success"] for line in (run_dir / "results.jsonl").read_text().splitlines()) < 240


@pytest.fixture
def installed_template(tmp_path: Path):
    """``dragon-campaign new`` in a folder of its own, installed into this environment; uninstalled afterwards."""
    written = subprocess.run([str(BIN / "dragon-campaign"), "new", "my_search", "--dir", str(tmp_path)], capture_output=True,
                             text=True, timeout=60)
    assert written.returncode == 0, written.stderr
    package = tmp_path / "my_search"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    installed = subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "-e", str(package)], capture_output=True,
                               text=True, timeout=300, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    try:
        yield package
    finally:
        subprocess.run([*pip, "uninstall", "-y", "my-search"], capture_output=True, timeout=300)


def test_a_template_app_installed_from_its_folder_is_listed_runs_and_passes_its_test(installed_template):
    env = outside_runtime_env()
    listed = subprocess.run([str(BIN / "dragon-campaign"), "apps"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and any(line.startswith("my_search ") for line in listed.stdout.splitlines()), listed.stdout
    lint = subprocess.run([str(BIN / "ruff"), "check", "."], capture_output=True, text=True, timeout=60, cwd=installed_template)
    assert lint.returncode == 0, lint.stdout
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(installed_template / "tests")],
                            env=env, capture_output=True, text=True, timeout=600, cwd=installed_template)
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert "2 passed" in tested.stdout
