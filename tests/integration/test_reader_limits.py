"""A distinct count too large for one PFCOUNT is a bad query (400), not a server error."""

from __future__ import annotations

from typing import Any

import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_keys
from stream.metrics.reader import QueryError, Reader

pytestmark = pytest.mark.integration


async def test_distinct_over_too_many_keys_is_a_query_error(
    settings: Settings, redis_client: Any
) -> None:
    reader = Reader(redis_client, build_keys(settings))
    shards = [f"clickstream.{p}" for p in range(4)]
    fits = [list(range(0, 60 * 2048, 60))]  # 2,048 windows × 4 shards = 8,192 keys
    assert await reader.distinct(shards, "minute", fits, ["active"]) == [0]
    too_many = [list(range(0, 60 * 2049, 60))]
    with pytest.raises(QueryError, match="narrow the time range"):
        await reader.distinct(shards, "minute", too_many, ["active"])
