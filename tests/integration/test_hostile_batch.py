"""A batch of hostile messages through the real engine: it keeps running, good events count,
bad ones reach the DLQ with a reason, label sets stay capped, and logs leak nothing.

Logs are captured at DEBUG; records at INFO and above (what production keeps) must contain
neither a user id nor any payload bytes.
"""

from __future__ import annotations

import json
import logging
import time

import orjson
import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_keys
from stream.contract.types import Reason
from stream.engine import store
from stream.engine.windows import Windows
from stream.infra.connections import redis_target
from stream.metrics.reader import Reader
from stream.serving.exporter import BusinessExporter
from tests.support.events import event
from tests.support.harness import EngineHarness, publish_raw, read_dlq, wait_caught_up

pytestmark = pytest.mark.integration

SECRET = "SECRETUSER"  # every user id below contains it
MARKER = "PAYLOADMARK"  # and every payload this


def _hostile(now: int) -> tuple[list[bytes], dict[bytes, Reason]]:
    """Good events with hostile but legal values, and bad messages with their expected reason."""
    good = []
    for i, campaign in enumerate([f"c:{{{i}}}|%{MARKER}" for i in range(12)] + ["other"]):
        user = f"{SECRET}:{{{i}}}|%\u202e€𝄞"
        good.append(event("impression", user, now - 30_000, campaign=campaign, placement="p:|"))
        good.append(event("page_view", user, now - 20_000, page=f"/{MARKER}"))
    deep = b"[" * 3000 + b"]" * 3000
    bad = {
        b'{"type":"page_view","x":%s,"user_id":"%sa","m":"%s"}'
        % (deep, SECRET.encode(), MARKER.encode()): Reason.SCHEMA,
        b'{"type":"page_view","event_id":"e","user_id":"%sb","ts":NaN,"m":"%s"}'
        % (SECRET.encode(), MARKER.encode()): Reason.NOT_JSON,
        json.dumps(
            {"type": "page_view", "event_id": "e", "user_id": SECRET + "c", "ts": 2**80,
             "m": MARKER}
        ).encode(): Reason.BAD_TIMESTAMP,
        MARKER.encode() + b"\xff\xfe" + SECRET.encode(): Reason.NOT_JSON,
        json.dumps(
            {"type": "nps_response", "event_id": "e", "user_id": SECRET + "d", "ts": now - 1000,
             "properties": {"score": 2**70}, "m": MARKER}
        ).encode(): Reason.OUT_OF_RANGE,
        json.dumps(
            {"type": "page_view", "event_id": "e", "user_id": SECRET + "e" * 300, "ts": now}
        ).encode(): Reason.SCHEMA,
        (MARKER + SECRET).encode() * 5000: Reason.OVERSIZED,
    }  # fmt: skip
    return [orjson.dumps(e) for e in good], bad


async def test_hostile_batch_keeps_the_worker_running_and_leaks_nothing(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings.with_overrides(max_label_values=5)
    now = int(time.time() * 1000)
    good, bad = _hostile(now)
    bad_list = list(bad)
    interleaved = [m for i, g in enumerate(good) for m in [g, *bad_list[i : i + 1]]]
    assert len(interleaved) == len(good) + len(bad)
    messages = [(b"one-key", m) for m in interleaved]  # one partition, one batch, mixed
    async with EngineHarness(settings) as harness:
        await publish_raw(settings, settings.topics.clickstream, messages)
        await wait_caught_up(settings)
        # still alive: a later good event is applied too
        later = event("page_view", SECRET + "-late", now - 1000, page="/")
        await publish_raw(settings, settings.topics.clickstream, [(b"k", orjson.dumps(later))])
        await wait_caught_up(settings)
        dlq = await read_dlq(settings, expected=len(bad))
        metrics = {
            (s.name, s.labels.get("reason", "")): s.value
            for m in harness.metrics.registry.collect()
            for s in m.samples
        }
    assert metrics[("stream_events_applied_total", "")] == len(good) + 1
    expected: dict[str, float] = {}
    for reason in bad.values():
        expected[reason.value] = expected.get(reason.value, 0) + 1
    rejected = {r: v for (n, r), v in metrics.items() if n == "stream_events_rejected_total"}
    assert rejected == expected
    assert sorted(r["reason"] for r in dlq) == sorted(r.value for r in bad.values())

    client = store.connect(redis_target(settings))
    try:
        windows = Windows(settings.zone)
        exporter = BusinessExporter(
            Reader(client, build_keys(settings)),
            windows,
            settings.granularities,
            settings.max_label_values,
        )
        families = await exporter.families()
    finally:
        await client.aclose()
    for family in families:
        per_window: dict[str, set[tuple[str, ...]]] = {}
        for sample in family.samples:
            labels = dict(sample.labels)
            window = labels.pop("window", "")
            labels.pop("le", None)
            per_window.setdefault(window, set()).add(tuple(sorted(labels.items())))
        for window, label_sets in per_window.items():
            assert len(label_sets) <= settings.max_label_values, (family.name, window)
        if family.name == "engagement_impressions":
            total = sum(s.value for s in family.samples if s.labels["window"] == "day")
            assert total == 13  # the 13 campaigns, folded into 5 series, none lost

    leaks = [
        f"{r.name}:{r.levelname}: {r.getMessage()[:200]}"
        for r in caplog.records
        if r.levelno >= logging.INFO and (SECRET in r.getMessage() or MARKER in r.getMessage())
    ]
    assert not leaks, leaks
    assert any(r.levelno >= logging.INFO for r in caplog.records)  # the capture did work
