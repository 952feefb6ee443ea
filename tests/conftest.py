"""The suite runs inside one real Dragon runtime: ``bash run-tests.sh`` (= ``dragon .venv/bin/pytest``).

Plain ``pytest`` (no runtime) runs only ``tests/unit/``: the pure parts (waiting tasks, the resource counter,
the command lines, the public API, utilization, Markdown), in seconds."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool

IN_RUNTIME = "DRAGON_MY_PUID" in os.environ


def runtime_nodes() -> int:
    from dragon.native.machine import System

    return System().nnodes


if IN_RUNTIME:
    multiprocessing.set_start_method("dragon", force=True)
    # tests/multinode/ needs a runtime over two nodes: bash run-multinode-tests.sh starts one
    collect_ignore = [] if runtime_nodes() > 1 else ["multinode"]
else:  # everything but tests/unit/ needs the runtime
    collect_ignore_glob = ["test_*.py", "multinode", "faults"]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Tests kill runtimes on purpose (faults, interrupts): a store of a killed runtime leaves its cap on the
    DDict orchestrator's spinning thread (an empty cgroup) for the next store or the launcher to remove. The
    suite removes what is left, and says so, so that the leftover check after it sees what tests leave running.
    """
    if IN_RUNTIME:
        from ddict_store.workarounds import remove_stale_caps

        removed = remove_stale_caps()
        if removed:
            print(f"\nremoved empty cgroups left by killed runtimes: {', '.join(removed)}")


def pytest_report_header() -> str:
    return "Dragon runtime: " + ("yes, the whole suite" if IN_RUNTIME else "no: only tests/unit/ (bash run-tests.sh runs everything)")


PASSWORD_ENV = "DRAGON_CAMPAIGN_TEST_REDIS_PASSWORD"
REDIS_PASSWORD = "s3cret-for-tests"


@pytest.fixture
def redis_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A throwaway redis-server on loopback that requires a password, published in $PASSWORD_ENV."""
    import shutil

    from dragon_campaign.bridges.redis_server import local_redis_server

    if shutil.which("redis-server") is None and not os.environ.get("CI"):  # CI installs one (.ci/run): there it must run
        pytest.skip("no redis-server on PATH: apt-get install redis-server (or conda install redis) runs these tests")
    monkeypatch.setenv(PASSWORD_ENV, REDIS_PASSWORD)
    with local_redis_server(password=REDIS_PASSWORD) as port:
        yield port


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


def start_server(methods: list, run_dir: Path, topics: tuple[str, ...] = (), **pools: WorkerPool) -> tuple[DragonQueues, DragonTaskServer]:
    queues = DragonQueues(topics=topics)
    server = DragonTaskServer(methods, queues, pools=pools or {"cpu": WorkerPool(workers=2)}, run_dir=run_dir)
    return queues, server.start()


@pytest.fixture
def serve(run_dir: Path) -> Iterator:
    """Start servers with ``serve(methods, topics=..., pool=WorkerPool(...))``; all are stopped after the test."""
    servers: list[DragonTaskServer] = []

    def _serve(methods: list, topics: tuple[str, ...] = (), **pools: WorkerPool) -> tuple[DragonQueues, DragonTaskServer]:
        queues, server = start_server(methods, run_dir, topics, **pools)
        servers.append(server)
        return queues, server

    yield _serve
    for server in servers:
        assert server.stop(timeout=60), "the task server did not shut down"


LAUNCHERS = Path(__file__).resolve().parent.parent / "launchers"


def load_launcher(name: str = "run_campaign"):
    """A script of launchers/ as a module (registered in sys.modules: pydantic resolves its models' annotations there)."""
    import importlib.util
    import sys as _sys

    spec = importlib.util.spec_from_file_location(name, LAUNCHERS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    _sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_in_process(function, *args, timeout: float = 120, host: str | None = None):
    """Run ``function(*args)`` in a separate Dragon process (on node ``host`` if given) and return what it
    returned (or raise what it raised)."""
    import sys as _sys

    from dragon.infrastructure.policy import Policy
    from dragon.native.process import Process
    from dragon.native.queue import Queue

    replies = Queue()
    policy = None if host is None else Policy(placement=Policy.Placement.HOST_NAME, host_name=host)
    child = Process(target=_call_and_reply, args=(function, args, replies), env={"PYTHONPATH": os.pathsep.join(_sys.path)},
                    policy=policy)
    child.start()
    ok, value = replies.get(timeout=timeout)
    child.join(timeout=timeout)
    replies.destroy()
    if not ok:
        raise value
    return value


def _call_and_reply(function, args, replies) -> None:
    import pickle
    import traceback

    try:
        replies.put((True, function(*args)))
    except Exception as exc:  # sent back to the test, as a traceback if the exception cannot be pickled
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = RuntimeError("".join(traceback.format_exception(exc)))
        replies.put((False, exc))
