"""Per-topic ProxyStore rules: values above a size threshold travel as proxies instead of bytes.

As in Colmena (``proxystore_name`` / ``proxystore_threshold``), stores are named: register them with
ProxyStore first (``Store(name, connector, register=True)``). Task inputs are proxied in the steering
process; results are proxied on the worker, which rebuilds the store from its configuration the first
time it needs it. Proxied objects stay in the store (readers may resolve them more than once) unless the
topic's rule says ``evict``: each proxy is then evicted when it is first resolved (ProxyStore's
``evict=True``), for values consumed once, so the store holds only what is still in flight. Otherwise clear
the store's namespace (``ddict_proxy_store`` does on close), or evict by key, when the campaign no longer needs them.

ProxyStore is imported only where a rule needs it: it brings numpy and pandas along (0.6 s), which every
worker would otherwise pay at start. A value cannot be a proxy before ProxyStore is imported (unpickling
one imports it), so the checks below look for the class only once the module is there.
"""

from __future__ import annotations

import pickle
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from proxystore.proxy import Proxy
    from proxystore.store import Store
    from proxystore.store.config import StoreConfig


def _is_proxy(value: Any) -> bool:
    """Whether ``value`` is a ProxyStore proxy, without resolving it (``type()`` does not) or importing ProxyStore."""
    module = sys.modules.get("proxystore.proxy")
    return module is not None and type(value) is module.Proxy


class WorkerProxyRule(NamedTuple):
    """What a worker needs to proxy a topic's results: the store's configuration and the rule's settings."""

    config: StoreConfig
    threshold: int
    evict: bool


@dataclass(frozen=True)
class ProxyRule:
    """Proxy values of more than ``threshold`` bytes through the store named ``store_name``; with ``evict``,
    each proxy is evicted from the store when it is first resolved.
    """

    store_name: str
    threshold: int
    evict: bool = False

    def store(self) -> Store:
        """The ProxyStore store of the rule (looked up by name in this process)."""
        from proxystore.store import get_store

        store = get_store(self.store_name)
        if store is None:
            raise ValueError(f"No ProxyStore store named {self.store_name!r} is registered; create it with register=True")
        return store

    def for_worker(self) -> WorkerProxyRule:
        """What a worker needs to apply the rule to results."""
        return WorkerProxyRule(self.store().config(), self.threshold, self.evict)


def size_of(value: Any) -> int:
    """Bytes a value would occupy on the wire (arrays and tensors by their buffer, others pickled)."""
    if _is_proxy(value):
        return 0
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if hasattr(value, "element_size") and hasattr(value, "numel"):  # torch.Tensor
        return value.element_size() * value.numel()
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return len(value)
    try:
        return len(pickle.dumps(value, protocol=5))
    except Exception:
        return 0  # the queue's own pickling will report the problem


def maybe_proxy(value: Any, store: Store, threshold: int, evict: bool = False) -> Any:
    """A proxy of ``value`` if it pickles to more than ``threshold`` bytes, else the value itself."""
    return store.proxy(value, evict=evict) if size_of(value) > threshold else value


def proxy_inputs(args: tuple, kwargs: dict[str, Any], rule: ProxyRule) -> tuple[tuple, dict[str, Any]]:
    """The task's arguments with the large ones proxied (Colmena's rule: each argument on its own)."""
    store = rule.store()
    return (
        tuple(maybe_proxy(a, store, rule.threshold, rule.evict) for a in args),
        {k: maybe_proxy(v, store, rule.threshold, rule.evict) for k, v in kwargs.items()},
    )


_worker_stores: dict[str, Store] = {}


def proxy_result(value: Any, rule: WorkerProxyRule | None) -> Any:
    """On a worker: proxy a result above the threshold, creating the store from its config once."""
    if rule is None:
        return value
    from proxystore.store import Store, get_store, register_store

    config = rule.config
    store = _worker_stores.get(config.name) or get_store(config.name)
    if store is None:
        store = Store.from_config(config)
        register_store(store, exist_ok=True)
    _worker_stores[config.name] = store
    return maybe_proxy(value, store, rule.threshold, rule.evict)


def resolve_input_proxies(args: tuple, kwargs: dict[str, Any]) -> dict[str, dict[str, dict]]:
    """On a worker, before the task starts: resolve its input proxies (arguments, and items of list, tuple
    and dict arguments, the ones Colmena resolves ahead) and time each, as Colmena's ``Result.time.proxy``:
    ``{str(key): {"times": {"resolve": {"seconds": s}}}}``. One that cannot be resolved is left for the
    task to meet where it touches it.
    """
    timings: dict[str, dict[str, dict]] = {}
    if "proxystore.proxy" not in sys.modules:
        return timings
    from proxystore.proxy import resolve
    from proxystore.store.utils import get_key

    for proxy in _input_proxies(args, kwargs):
        tick = time.perf_counter()
        try:
            resolve(proxy)
        except Exception:
            continue
        timings[str(get_key(proxy))] = {"times": {"resolve": {"seconds": time.perf_counter() - tick}}}
    return timings


def _input_proxies(args: tuple, kwargs: dict[str, Any]) -> Iterator[Proxy]:
    for value in (*args, *kwargs.values()):
        if _is_proxy(value):
            yield value
        elif type(value) in (list, tuple):
            yield from (item for item in value if _is_proxy(item))
        elif type(value) is dict:
            yield from (item for item in value.values() if _is_proxy(item))
