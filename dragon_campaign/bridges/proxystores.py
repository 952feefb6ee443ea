"""Per-topic ProxyStore backends, created by the runtime from settings in the spirit of the original
studies' options (``--simulate-ps-backend redis --train-ps-backend file --ps-threshold 500000
--ps-file-dir DIR --redishost H --redisport P --ps-globus-config FILE``).

``proxy_stores(settings, name)`` creates one store per backend in use (``ProxyStoreSettings``), registers it with ProxyStore
(workers rebuild it from its configuration), yields the ``proxystore_name`` / ``proxystore_threshold``
arguments of ``DragonQueues``, and closes the stores on exit. Backends:

* ``ddict``: the in-memory DDict of this Dragon runtime (``ddict_store.connector.ddict_proxy_store``:
  the DDictConnector with the frame serializer); only Dragon workers can resolve these proxies.
* ``file``: a shared file system directory (``file_dir``; a subdirectory per store, removed at close).
* ``redis``: a Redis server (``redis_host``, ``redis_port``). A password is read from the environment
  variable named by ``redis_password_env`` on every side, so no configuration file holds it.
* ``globus``: Globus transfers between sites (``globus_config``: a ProxyStore ``GlobusEndpoints`` JSON file).
* ``endpoint``: ProxyStore endpoints (``endpoints``: their UUIDs; ``proxystore-endpoint`` must run).
* ``none``: the topic's values travel inside the task messages.

``globus`` and ``endpoint`` need services that this project's test machines cannot reach; they are
built from ProxyStore's own connectors but not tested here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypedDict

import redis
from proxystore.connectors.file import FileConnector
from proxystore.connectors.redis import RedisConnector
from proxystore.store import Store, unregister_store

from dragon_campaign.bridges.proxystore_settings import Backend, ProxyStoreSettings


class QueueProxying(TypedDict):
    """The ``DragonQueues`` keyword arguments that route each topic through its store."""

    proxystore_name: dict[str, str]
    proxystore_threshold: dict[str, int]
    proxystore_evict: dict[str, bool]

class PasswordRedisConnector(RedisConnector):
    """ProxyStore's RedisConnector, authenticating with a password taken from an environment variable.

    The configuration sent to workers names the variable, never the password.
    """

    def __init__(self, hostname: str, port: int, clear: bool = False, password_env: str | None = None) -> None:
        super().__init__(hostname, port, clear)
        self.password_env = password_env
        if password_env is not None:
            password = os.environ.get(password_env)
            if password is None:
                raise ValueError(f"The Redis password variable {password_env} is not set in this process's environment")
            self._redis_client = redis.StrictRedis(host=hostname, port=port, password=password)

    def config(self) -> dict[str, Any]:
        """The connector's settings for workers; the password stays in the environment."""
        return {**super().config(), "password_env": self.password_env}


def _store(backend: Backend, settings: ProxyStoreSettings, name: str, stack: ExitStack) -> Store:
    if backend == "ddict":  # arrays and tensors written straight into managed memory (ddict_store.frames)
        from ddict_store import DDictStore
        from ddict_store.connector import ddict_proxy_store

        return ddict_proxy_store(name, stack.enter_context(DDictStore()), metrics=True, register=True)
    return Store(name, _connector(backend, settings, name), metrics=True, register=True)


def _connector(backend: Backend, settings: ProxyStoreSettings, name: str) -> Any:
    if backend == "file":
        return FileConnector(str(Path(settings.file_dir or ".") / name), clear=True)
    if backend == "redis":
        return PasswordRedisConnector(settings.redis_host, settings.redis_port, password_env=settings.redis_password_env)
    if backend == "globus":
        from proxystore.connectors.globus import GlobusConnector, GlobusEndpoints

        return GlobusConnector(GlobusEndpoints.from_json(settings.globus_config or ""))
    if backend == "endpoint":
        from proxystore.connectors.endpoint import EndpointConnector

        return EndpointConnector(settings.endpoints)
    raise ValueError(f"Unknown ProxyStore backend {backend!r}")


@contextmanager
def proxy_stores(settings: ProxyStoreSettings, name: str) -> Iterator[QueueProxying]:
    """Create and register the stores ``settings`` use; yields keyword arguments for ``DragonQueues``.

    Store names are ``<name>-<backend>``, so concurrent campaigns on one machine need different names.
    """
    with ExitStack() as stack:
        stores: dict[str, Store] = {}
        for backend in sorted(set(settings.backends.values()) - {"none"}):
            store_name = f"{name}-{backend}"
            store = _store(backend, settings, store_name, stack)
            stack.callback(unregister_store, store_name)
            stack.callback(store.close)
            stores[backend] = store
        proxied = {topic: backend for topic, backend in settings.backends.items() if backend != "none"}
        yield {"proxystore_name": {topic: stores[backend].name for topic, backend in proxied.items()},
               "proxystore_threshold": {topic: settings.threshold for topic in proxied},
               "proxystore_evict": {topic: topic in settings.evict for topic in proxied}}
