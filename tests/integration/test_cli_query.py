"""`stream query` against the real Redis: a metric series, a customer, the at-risk list."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from stream.cli import cli
from stream.config.settings import Settings

pytestmark = pytest.mark.integration


def test_query_reads_the_redis_the_workers_write_to(settings: Settings) -> None:
    env = {
        "REDIS_URL": settings.redis_url,
        "STREAM_REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "STREAM_KEY_PREFIX": settings.key_prefix,
    }
    runner = CliRunner()

    series = runner.invoke(cli, ["query", "page_views", "--granularity", "day", "--json"], env=env)
    assert series.exit_code == 0, series.output
    body = orjson.loads(series.output)
    assert body["metric"] == "page_views" and body["granularity"] == "day"
    assert [p["value"] for p in body["points"]] == [0] * len(body["points"])

    unknown = runner.invoke(cli, ["query", "--customer", "nobody"], env=env)
    assert unknown.exit_code == 1 and "unknown customer 'nobody'" in unknown.output

    at_risk = runner.invoke(cli, ["query", "--at-risk", "--limit", "5"], env=env)
    assert at_risk.exit_code == 0, at_risk.output
    assert orjson.loads(at_risk.output)["customers"] == []

    bad = runner.invoke(cli, ["query", "ctr", "--filter", "page=/x"], env=env)  # a QueryError
    assert bad.exit_code == 1 and "no dimension" in bad.output

    nowhere = runner.invoke(cli, ["query", "page_views"], env={"REDIS_URL": ""})
    assert nowhere.exit_code == 1 and "REDIS_URL" in nowhere.output


async def test_query_refuses_a_store_of_another_placement(
    settings: Settings, redis_client: Any
) -> None:
    """Reading another placement's key names would answer 0 everywhere: say so instead."""
    await redis_client.set(f"{settings.key_prefix}:placement", "partition")
    env = {
        "REDIS_URL": settings.redis_url,
        "STREAM_REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "STREAM_KEY_PREFIX": settings.key_prefix,
    }
    runner = CliRunner()
    refused = await asyncio.to_thread(runner.invoke, cli, ["query", "page_views"], env=env)
    assert refused.exit_code == 1 and "STREAM_REDIS_PLACEMENT=partition" in refused.output
    env["STREAM_REDIS_PLACEMENT"] = "partition"
    agreed = await asyncio.to_thread(runner.invoke, cli, ["query", "page_views"], env=env)
    assert agreed.exit_code == 0, agreed.output
