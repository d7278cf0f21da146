"""Every rejection reason reaches the DLQ with its bytes and source; good events still count."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from stream.config.settings import Settings
from stream.contract.types import Reason
from tests.support.compare import compare_all
from tests.support.events import event
from tests.support.harness import (
    EngineHarness,
    counter_values,
    publish_raw,
    read_dlq,
    wait_caught_up,
)
from tests.support.reference import Reference

pytestmark = pytest.mark.integration


def _bad_messages(now_ms: int) -> dict[Reason, bytes]:
    def dump(obj: object) -> bytes:
        return orjson.dumps(obj)

    ok = event("page_view", "u1", now_ms - 60_000, page="/")
    return {
        Reason.OVERSIZED: dump({**ok, "properties": {"page": "/", "pad": "x" * 70_000}}),
        Reason.NOT_JSON: b"{this is not json",
        Reason.SCHEMA: dump({**ok, "user_id": 12345}),
        Reason.MISSING_EVENT_ID: dump({k: v for k, v in ok.items() if k != "event_id"}),
        Reason.MISSING_USER_ID: dump({**ok, "user_id": ""}),
        Reason.UNKNOWN_TYPE: dump({**ok, "type": "teleport"}),
        Reason.BAD_TIMESTAMP: dump({**ok, "ts": "2026-01-01T00:00:00"}),  # naive
        Reason.FUTURE_TIMESTAMP: dump({**ok, "ts": now_ms + 3_600_000}),
        Reason.OUT_OF_RANGE: dump(event("nps_response", "u1", now_ms - 1000, score=11)),
        Reason.LATE: dump({**ok, "event_id": "late-1", "ts": now_ms - 3 * 86_400_000}),
    }


async def test_every_reason_goes_to_dlq_and_is_counted(settings: Settings) -> None:
    now_ms = int(time.time() * 1000)
    bad = _bad_messages(now_ms)
    good_before = event("page_view", "u1", now_ms - 30_000, page="/pricing")
    good_after = event("click", "u1", now_ms - 20_000, campaign="c", placement="p")
    # One user key => one partition, one batch: bad messages interleaved with good ones.
    messages = [(b"u1", orjson.dumps(good_before))]
    messages += [(b"u1", raw) for reason, raw in bad.items()]
    messages += [(b"u1", orjson.dumps(good_after))]
    async with EngineHarness(settings) as harness:
        await publish_raw(settings, settings.topics.clickstream, messages)
        await wait_caught_up(settings)
        dlq = await read_dlq(settings, expected=len(bad))
        counted = counter_values(harness.metrics, "stream_events_rejected", "reason")
    assert sorted(r["reason"] for r in dlq) == sorted(r.value for r in bad)
    for record in dlq:
        original = base64.b64decode(record["original_b64"])
        assert original == bad[Reason(record["reason"])]
        assert record["source"]["topic"] == settings.topics.clickstream
        assert record["source"]["offset"] >= 1
        assert record["detail"]
    assert counted == {r.value: 1.0 for r in bad}
    # the good events around them were applied
    ref = Reference.build([good_before, good_after], settings)
    problems = await compare_all(settings, ref)
    assert not problems, problems


async def test_garbage_that_starts_like_a_number_is_not_json(settings: Settings) -> None:
    garbage = [b"7 garbage", b"1e5x", b"-3,4", b"0\xff\x00", b"42}"]
    async with EngineHarness(settings):
        await publish_raw(settings, settings.topics.clickstream, [(b"u1", g) for g in garbage])
        await wait_caught_up(settings)
        dlq = await read_dlq(settings, expected=len(garbage))
    assert [r["reason"] for r in dlq] == ["not_json"] * len(garbage)


async def test_segment_messages_round_trip(settings: Settings) -> None:
    now_ms = int(time.time() * 1000)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now_ms / 1000 - 120))
    page = {
        "type": "page",
        "messageId": "m-1",
        "anonymousId": "anon-7",
        "timestamp": iso,
        "name": "Pricing",
        "properties": {"path": "/pricing", "url": "https://x/pricing"},
        "context": {"library": {"name": "analytics.js"}},
    }
    track = {
        "type": "track",
        "messageId": "m-2",
        "userId": "anon-7",
        "timestamp": iso,
        "event": "Feature Used",
        "properties": {"feature": "export"},
    }
    unmapped = {
        "type": "track",
        "messageId": "m-3",
        "userId": "anon-7",
        "timestamp": iso,
        "event": "Something Custom",
    }
    async with EngineHarness(settings):
        await publish_raw(
            settings,
            settings.topics.clickstream,
            [(b"anon-7", orjson.dumps(m)) for m in (page, track, unmapped)],
        )
        await wait_caught_up(settings)
        dlq = await read_dlq(settings, expected=1)
    assert [r["reason"] for r in dlq] == ["unknown_type"]
    ts = (
        int(time.mktime(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")) * 1000) - time.timezone * 1000
    )
    ref = Reference.build(
        [
            {
                "type": "page_view",
                "user_id": "anon-7",
                "ts": ts,
                "properties": {"page": "/pricing"},
            },
            {
                "type": "feature_used",
                "user_id": "anon-7",
                "ts": ts,
                "properties": {"feature": "export"},
            },
        ],
        settings,
    )
    problems = await compare_all(settings, ref)
    assert not problems, problems
