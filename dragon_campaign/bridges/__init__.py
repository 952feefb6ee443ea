"""Execution and data movement across sites: methods routed to executors elsewhere (Parsl, Globus
Compute) beside Dragon pools, and per-topic ProxyStore backends (DDict, file, Redis, Globus, endpoints).
"""

from typing import TYPE_CHECKING

from dragon_campaign.lazy import lazy_exports

_EXPORTS = {
    "ExecutorPool": "dragon_campaign.bridges.executors",
    "ExecutorSpec": "dragon_campaign.bridges.executor_specs",
    "executor_pools": "dragon_campaign.bridges.executor_specs",
    "ProxyStoreSettings": "dragon_campaign.bridges.proxystore_settings",
    "proxy_stores": "dragon_campaign.bridges.proxystores",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from dragon_campaign.bridges.executor_specs import ExecutorSpec, executor_pools  # noqa: F401
    from dragon_campaign.bridges.executors import ExecutorPool  # noqa: F401
    from dragon_campaign.bridges.proxystore_settings import ProxyStoreSettings  # noqa: F401
    from dragon_campaign.bridges.proxystores import proxy_stores  # noqa: F401

__getattr__ = lazy_exports(__name__, _EXPORTS)
