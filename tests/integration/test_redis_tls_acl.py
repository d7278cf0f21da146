"""A real engine applying batches to a TLS-only redis-server as a restricted ACL user.

The certificates come from a throw-away CA made by the test; the ACL rule is the one
docs/configuration.md recommends, limited to this test's key prefix. The default user is
switched off, so nothing can silently fall back to an unauthenticated connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.exceptions

from stream.config.settings import Settings
from stream.engine import store
from stream.engine.keys import Keys
from stream.engine.windows import Windows
from stream.infra.connections import redis_target
from stream.infra.localstack import LocalStack, RedisTls
from stream.metrics.reader import Reader
from stream.metrics.spec import MetricOptions
from stream.serving.query import run_query
from tests.support.events import event
from tests.support.harness import EngineHarness, publish_events, wait_caught_up
from tests.support.tls import Pki, make_pki

pytestmark = [pytest.mark.integration, pytest.mark.own_store]

PASSWORD = "worker-password-1"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
def tls_stack(pki: Pki, tmp_path: Path) -> Iterator[LocalStack]:
    tls = RedisTls(pki.server_cert, pki.server_key, pki.ca_file)
    with LocalStack(workdir=tmp_path / "stack", redis_tls=tls) as running:
        yield running


async def test_engine_applies_through_tls_as_an_acl_user(
    settings: Settings, tls_stack: LocalStack, pki: Pki
) -> None:
    tls_files = {
        "redis_tls_ca_file": str(pki.ca_file),
        "redis_tls_cert_file": str(pki.client_cert),
        "redis_tls_key_file": str(pki.client_key),
    }
    admin = store.connect(
        redis_target(Settings.model_validate({**settings.model_dump(), **tls_files,
                                               "redis_url": tls_stack.redis_url}))
    )  # fmt: skip
    prefix = settings.key_prefix
    rule = f"on >{PASSWORD} ~{prefix}:* +@read +@write +@hyperloglog +@scripting +ping +info"
    await admin.execute_command("ACL", "SETUSER", "worker", *rule.split(), "-flushall", "-flushdb")
    await admin.execute_command("ACL", "SETUSER", "default", "off")
    await admin.aclose()

    secure = Settings.model_validate(
        {
            **settings.model_dump(),
            **tls_files,
            "redis_url": tls_stack.redis_url,
            "redis_username": "worker",
            "redis_password": PASSWORD,
        }
    )
    assert secure.redis_url.startswith("rediss://")
    now = int(time.time() * 1000)
    events = [event("page_view", f"u{i}", now - 60_000 + i, page="/") for i in range(25)]
    events.append({"type": "page_view", "user_id": "no-event-id", "ts": now})  # a reject
    async with EngineHarness(secure) as harness:
        await publish_events(secure, events)
        await wait_caught_up(secure)
        assert harness.engine is not None and harness.engine.batches_applied >= 1

    client = store.connect(redis_target(secure))
    try:
        reader = Reader(client, Keys(prefix))
        body = await run_query(
            "page_views", {"granularity": "day"}, reader, Windows(secure.zone), MetricOptions()
        )
        assert body["points"][-1]["value"] == 25
        with pytest.raises(redis.exceptions.NoPermissionError):  # the ACL holds
            await client.set("someone-else:key", b"x")
    finally:
        await client.aclose()

    refused = [
        secure.with_overrides(redis_password=secure.redis_password.__class__("wrong")),
        secure.with_overrides(redis_tls_ca_file=""),  # server certificate not trusted
        secure.with_overrides(redis_url=tls_stack.redis_url.replace("rediss", "redis", 1)),
    ]
    for bad in refused:
        with pytest.raises((redis.exceptions.RedisError, ValueError, OSError)):
            probe = store.connect(redis_target(bad))
            try:
                await probe.ping()
            finally:
                await probe.aclose()
