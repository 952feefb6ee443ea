"""Execution and data movement across sites: methods routed to executors elsewhere (Parsl, Globus
Compute) beside Dragon pools, and per-topic ProxyStore backends (DDict, file, Redis, Globus, endpoints)."""

from dragon_campaign.bridges.executor_specs import ExecutorSpec, executor_pools
from dragon_campaign.bridges.executors import ExecutorPool
from dragon_campaign.bridges.proxystores import ProxyStoreSettings, proxy_stores

__all__ = ["ExecutorPool", "ExecutorSpec", "ProxyStoreSettings", "executor_pools", "proxy_stores"]
