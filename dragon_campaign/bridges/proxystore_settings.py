"""Which ProxyStore backend each topic uses (the ``proxystore:`` section of a campaign file); checked
before the runtime starts, so it imports neither ProxyStore nor Redis (see ``.proxystores``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

Backend = Literal["none", "ddict", "file", "redis", "globus", "endpoint"]


class ProxyStoreSettings(BaseModel):
    """Which ProxyStore backend each topic uses, and the settings of those backends."""

    model_config = ConfigDict(extra="forbid")

    backends: dict[str, Backend] = Field(default_factory=dict, description="Backend per topic: none, ddict, file, redis, globus or endpoint")
    threshold: NonNegativeInt = Field(500_000, description="Values above this many bytes travel as proxies")
    evict: list[str] = Field(default_factory=list, description="Topics whose proxies are evicted when first resolved (values consumed once)")
    file_dir: str | None = Field(None, description="file: a directory every site reaches")
    redis_host: str = Field("127.0.0.1", description="redis: server host")
    redis_port: int = Field(6379, ge=1, le=65535, description="redis: server port")
    redis_password_env: str | None = Field(None, description="redis: name of the environment variable holding the password")
    globus_config: str | None = Field(None, description="globus: ProxyStore GlobusEndpoints JSON file")
    endpoints: list[str] = Field(default_factory=list, description="endpoint: ProxyStore endpoint UUIDs")

    @model_validator(mode="after")
    def _backends_have_settings(self) -> ProxyStoreSettings:
        used = set(self.backends.values())
        unproxied = set(self.evict) - {topic for topic, backend in self.backends.items() if backend != "none"}
        if unproxied:
            raise ValueError(f"evict names topics without a ProxyStore backend: {sorted(unproxied)}")
        if "file" in used and not self.file_dir:
            raise ValueError("the file backend needs file_dir")
        if "globus" in used and not self.globus_config:
            raise ValueError("the globus backend needs globus_config (a GlobusEndpoints JSON file)")
        if "endpoint" in used and not self.endpoints:
            raise ValueError("the endpoint backend needs endpoints (ProxyStore endpoint UUIDs)")
        return self
