"""``stream replay`` against the real broker: every line published once, in file order per
partition, on its family's topic, keyed (and partitioned) by the user the decoder will see."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.config.settings import Settings
from stream.contract.decode import Decoder, Event
from stream.contract.types import FAMILY_OF, EventType
from stream.infra.runtime import worker_environment
from stream.tools.simulate import SimulationConfig, Simulator, take
from tests.support.reference import partition_of

pytestmark = pytest.mark.integration

PROPS = ("page", "platform", "channel", "ticket_id", "author", "public", "score", "amount")


def _events(now_ms: int) -> list[dict[str, Any]]:
    sim = Simulator(SimulationConfig(seed=3, users=300, start_ms=now_ms - 3_600_000, activity=20))
    events = [e.event for e in take(sim.events(), 3000)]
    assert any(e["type"] == "ticket_replied" for e in events)  # a boolean property to carry
    return events


def _segment(now_ms: int) -> list[dict[str, Any]]:
    """Messages whose Kafka key must not be their `user_id`."""
    ts = now_ms - 60_000
    return [
        {"type": "track", "event": "Feature Used", "messageId": "m1", "userId": "seg-1",
         "user_id": "u000001", "timestamp": ts, "properties": {"feature": "export"}},
        {"type": "page", "messageId": "m2", "anonymousId": "anon-1", "user_id": "u000002",
         "timestamp": ts},
        {"type": "identify", "event_id": "m3", "userId": "seg-2", "user_id": "u000003", "ts": ts},
    ]  # fmt: skip


async def _replay(settings: Settings, path: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stream.cli",
        "replay",
        str(path),
        *args,
        env={**os.environ, **worker_environment(settings)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def _published(settings: Settings) -> dict[TopicPartition, list[tuple[bytes, bytes]]]:
    """Every (key, value) on the input topics, per partition in offset order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in settings.topics.inputs()
            for p in range(settings.topic_partitions)
        ]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: dict[TopicPartition, list[tuple[bytes, bytes]]] = {tp: [] for tp in tps}
        while any(len(got[tp]) < ends[tp] for tp in tps):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                got[tp].extend((r.key or b"", r.value or b"") for r in records)
        return got
    finally:
        await consumer.stop()


def _check_published(
    settings: Settings,
    got: dict[TopicPartition, list[tuple[bytes, bytes]]],
    expected: list[dict[str, Any]],
) -> None:
    """Count, topic, key, partition and per-partition order, against the decoder's view."""
    decoder = Decoder(
        max_message_bytes=settings.max_message_bytes,
        max_future_skew_ms=settings.max_future_skew_seconds * 1000,
        segment_event_map=settings.segment_event_map,
    )
    families = {
        "clickstream": settings.topics.clickstream,
        "social": settings.topics.social,
        "support": settings.topics.support,
        "feedback": settings.topics.feedback,
        "account": settings.topics.account,
    }
    position = {(m.get("event_id") or m.get("messageId")): i for i, m in enumerate(expected)}
    assert sum(len(records) for records in got.values()) == len(expected)
    seen = set()
    now_ms = max(m.get("ts") or m.get("timestamp") for m in expected)  # not a timestamp test
    for tp, records in got.items():
        last = -1
        for key, value in records:
            decoded = decoder.decode(value, now_ms)
            assert isinstance(decoded, Event), decoded
            assert key == decoded.user_id.encode()
            assert tp.partition == partition_of(decoded.user_id, settings.topic_partitions)
            family = FAMILY_OF[EventType(decoded.type)].value
            assert tp.topic == families[family]
            index = position[decoded.event_id]
            assert index > last, "published out of file order within a partition"
            last = index
            seen.add(index)
    assert seen == set(range(len(expected)))


async def test_replay_jsonl(settings: Settings, tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    events = _events(now_ms)
    events[1500:1500] = _segment(now_ms)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n\n")  # a blank line
    out = await _replay(settings, path)
    assert f"replayed {len(events):,} events" in out
    _check_published(settings, await _published(settings), events)


async def test_replay_csv_with_a_boolean_column(settings: Settings, tmp_path: Path) -> None:
    events = _events(int(time.time() * 1000))
    path = tmp_path / "events.csv"
    top = ("event_id", "type", "ts", "user_id", "session_id")
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*top, *PROPS])
        for e in events:
            props = e.get("properties") or {}
            cells = [props.get(p, "") for p in PROPS]
            cells = [str(c).lower() if isinstance(c, bool) else c for c in cells]
            writer.writerow([e.get(k, "") for k in top] + cells)
    mapping = ",".join(
        [f"{k}={k}" for k in top]
        + [f"properties.{p}={p}" for p in PROPS if p != "public"]
        + ["properties.public:bool=public"]
    )
    out = await _replay(settings, path, "--map", mapping)
    assert f"replayed {len(events):,} events" in out
    got = await _published(settings)
    _check_published(settings, got, events)
    replies = [
        orjson.loads(value)
        for records in got.values()
        for _, value in records
        if b'"ticket_replied"' in value
    ]
    assert replies and all(r["properties"]["public"] is True for r in replies)
