"""A real ``stream worker`` process: HTTP API, Prometheus /metrics, health, clean shutdown."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.config.settings import Settings
from tests.support.events import event
from tests.support.harness import publish_events, wait_caught_up
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.e2e


async def test_api_metrics_and_health(settings: Settings, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    events = [event("page_view", f"u{i}", now - 60_000 + i, page="/pricing") for i in range(30)]
    events += [
        event("impression", f"u{i}", now - 50_000 + i, campaign="spring", placement="top")
        for i in range(20)
    ]
    events += [
        event("click", f"u{i}", now - 40_000 + i, campaign="spring", placement="top")
        for i in range(5)
    ]
    worker = WorkerProcess(settings, tmp_path).start()
    try:
        worker.wait_ready()
        assert worker.get("/healthz")[0] == 200
        await publish_events(settings, events)
        await wait_caught_up(settings)

        status, index = worker.get("/api/v1/metrics")
        assert status == 200 and {"dau", "ctr", "page_views"} <= {
            m["name"] for m in index["metrics"]
        }

        status, body = worker.get("/api/v1/metrics/page_views?granularity=day&page=/pricing")
        assert status == 200 and body["metric"] == "page_views" and body["granularity"] == "day"
        assert body["points"][-1]["value"] == 30
        assert body["points"][-1]["start"].endswith("+00:00")

        status, body = worker.get("/api/v1/metrics/ctr?granularity=hour&campaign=spring")
        assert status == 200
        values = [p["value"] for p in body["points"] if p["value"] is not None]
        assert (values and abs(sum(values) / len(values) - 25.0) < 1e-9) or values == [25.0]

        assert worker.get("/api/v1/metrics/nope")[0] == 404
        assert worker.get("/api/v1/metrics/dau?granularity=fortnight")[0] == 400
        assert worker.get("/api/v1/metrics/dau?granularity=hour")[0] == 400
        assert worker.get("/api/v1/metrics/dau?start=yesterday")[0] == 400
        assert worker.get("/api/v1/metrics/ctr?colour=red")[0] == 400

        status, text = worker.get("/metrics")
        assert status == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }
        names = {name for name, _ in samples}
        assert samples[("engagement_dau", ())] == 30
        assert samples[("engagement_page_views", (("window", "day"),))] == 30
        key = (
            "engagement_ctr_ratio",
            (("campaign", "spring"), ("placement", "top"), ("window", "day")),
        )
        assert samples[key] == 0.25
        for required in (
            "stream_events_consumed_total",
            "stream_events_applied_total",
            "stream_batch_size_events_bucket",
            "stream_batch_apply_seconds_bucket",
            "stream_event_lag_seconds_bucket",
            "stream_redis_roundtrip_seconds_bucket",
            "stream_consumer_lag_messages",
            "engagement_wau",
            "engagement_mau",
        ):
            assert required in names, required
        # Prometheus hygiene: no per-user label anywhere
        assert not any("user" in k for _, labels in samples for k, _ in labels)
    finally:
        assert worker.stop() == 0


async def test_a_worker_without_sessions_and_scores(settings: Settings, tmp_path: Path) -> None:
    """The switches reach a real worker: its counters work, and the read side says what is
    not kept instead of serving empty numbers."""
    s = settings.with_per_user_states(sessions=False, score=False)
    now = int(time.time() * 1000)
    events = [event("page_view", f"u{i}", now - 60_000 + i, page="/pricing") for i in range(12)]
    worker = WorkerProcess(s, tmp_path).start()
    try:
        worker.wait_ready()
        await publish_events(s, events)
        await wait_caught_up(s)
        status, body = worker.get("/api/v1/metrics/page_views?granularity=day")
        assert status == 200 and body["points"][-1]["value"] == 12
        status, body = worker.get("/api/v1/metrics/sessions?granularity=day")
        assert status == 400 and "sessions are off" in body["error"]
        status, body = worker.get("/api/v1/customers/u1")
        assert status == 404 and "scores are off" in body["error"]
        assert worker.get("/api/v1/customers?band=at_risk")[0] == 404
        status, text = worker.get("/metrics")
        names = {fam.name for fam in text_string_to_metric_families(text)}
        assert "engagement_page_views" in names
        assert not {n for n in names if n.startswith(("engagement_session", "engagement_score"))}
    finally:
        assert worker.stop() == 0
