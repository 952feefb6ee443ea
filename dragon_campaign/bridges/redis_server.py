"""A throwaway redis-server on loopback, for one-node runs of the redis backend, tests and benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis


@contextmanager
def local_redis_server(password: str | None = None, timeout: float = 10.0) -> Iterator[int]:
    """Start ``redis-server`` on a free port of 127.0.0.1, without persistence; yields the port, stops it on exit.

    Args:
        password: Required from clients when given (``--requirepass``).
    """
    if shutil.which("redis-server") is None:
        raise FileNotFoundError("redis-server is not on PATH (apt-get install redis-server, conda install redis, or a "
                                "module of your site; install.sh installs no system package)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(command + (["--requirepass", password] if password else []), stdout=subprocess.DEVNULL)
    try:
        client = redis.StrictRedis(port=port, password=password)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        client.close()
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)
