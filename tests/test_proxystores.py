"""Per-topic ProxyStore backends created by the runtime: each topic's values above the threshold, and only
those, go through its backend (a real redis-server on loopback with a password, a real directory)."""

from __future__ import annotations

import pytest
import redis
import tasks
from conftest import PASSWORD_ENV, REDIS_PASSWORD
from proxystore.proxy import Proxy

from dragon_campaign import DragonQueues, DragonTaskServer, WorkerPool
from dragon_campaign.bridges import ProxyStoreSettings, proxy_stores

THRESHOLD = 10_000


def test_each_topic_proxies_exactly_what_exceeds_the_threshold(redis_port, tmp_path):
    settings = ProxyStoreSettings(backends={"simulate": "redis", "train": "file", "infer": "none"}, threshold=THRESHOLD,
                                  file_dir=str(tmp_path / "shared"), redis_port=redis_port, redis_password_env=PASSWORD_ENV)
    redis_keys = redis.StrictRedis(port=redis_port, password=REDIS_PASSWORD)
    with proxy_stores(settings, "campaign-test") as proxying:
        queues = DragonQueues(topics=["simulate", "train", "infer"], **proxying)
        server = DragonTaskServer([tasks.train, tasks.noop], queues, pools={"cpu": WorkerPool(workers=1)}, run_dir=tmp_path / "run")
        with server:
            for topic in ("simulate", "train", "infer"):
                queues.send_inputs(1.0, 100, method="train", topic=topic)  # a small result
                queues.send_inputs(2.0, 50_000, method="train", topic=topic)  # a large result
                queues.send_inputs(b"y" * 20_000, method="noop", topic=topic)  # a large input, echoed back
            results = {topic: [queues.get_result(topic) for _ in range(3)] for topic in ("simulate", "train", "infer")}
            for topic, done in results.items():
                assert all(r.success for r in done), [r.failure_info for r in done]
                proxied = {len(r.value["payload"]) if isinstance(r.value, dict) else len(r.value): isinstance(r.value, Proxy) for r in done}
                assert proxied == ({100: False, 50_000: True, 20_000: True} if topic != "infer" else {100: False, 50_000: False, 20_000: False})
            # per proxied topic: the large result and the large input (echoed back as the same proxy)
            assert redis_keys.dbsize() == 2
            objects = [f for f in (tmp_path / "shared" / "campaign-test-file").iterdir() if f.suffix != ".ready"]  # + a marker each
            assert sorted(f.stat().st_size // 1000 for f in objects) == [20, 50]
    assert not (tmp_path / "shared" / "campaign-test-file").exists(), "closing the file store removes its directory"


def test_settings_are_checked():
    with pytest.raises(ValueError, match="file backend needs file_dir"):
        ProxyStoreSettings(backends={"train": "file"})
    with pytest.raises(ValueError, match="globus backend needs globus_config"):
        ProxyStoreSettings(backends={"train": "globus"})
    with pytest.raises(ValueError, match="Input should be 'none', 'ddict', 'file', 'redis', 'globus' or 'endpoint'"):
        ProxyStoreSettings(backends={"train": "s3"})


def test_missing_redis_password_is_reported(monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    settings = ProxyStoreSettings(backends={"simulate": "redis"}, redis_password_env=PASSWORD_ENV)
    with pytest.raises(ValueError, match=f"{PASSWORD_ENV} is not set"), proxy_stores(settings, "no-password"):
        pass


def test_ddict_backend_keeps_proxied_values_in_this_runtime(tmp_path):
    settings = ProxyStoreSettings(backends={"train": "ddict"}, threshold=THRESHOLD)
    with proxy_stores(settings, "ddict-test") as proxying:
        queues = DragonQueues(topics=["train"], **proxying)
        with DragonTaskServer([tasks.train], queues, pools={"cpu": WorkerPool(workers=1)}, run_dir=tmp_path / "run"):
            queues.send_inputs(1.0, 100, method="train", topic="train")
            queues.send_inputs(2.0, 50_000, method="train", topic="train")
            small, large = sorted((queues.get_result("train") for _ in range(2)), key=lambda r: r.value["value"])
        assert not isinstance(small.value, Proxy) and isinstance(large.value, Proxy)
        assert len(large.value["payload"]) == 50_000  # resolved from the DDict while the store is open
