"""A real ``stream worker`` process: HTTP API, Prometheus /metrics, health, clean shutdown."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
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

        # ids the decoder accepts that a URL path has to encode
        odd_ids = ["u{1}", "{x}", "a/b", "50%", "sp ace", "ü?#", "a..b", "}{"]
        await publish_events(settings, [event("click", u, now - 30_000) for u in odd_ids])
        await wait_caught_up(settings)
        for user in odd_ids:
            status, body = worker.get(f"/api/v1/customers/{quote(user, safe='')}")
            assert status == 200 and body["customer"] == user, (user, status, body)

        # the reported 500s are JSON 400s now
        for query in (
            "start=NaN",
            "start=-99999999999999999999",
            "start=9999-12-31&end=9999-12-31T23:59:59Z",
        ):
            status, body = worker.get(f"/api/v1/metrics/page_views?{query}")
            assert status == 400 and isinstance(body, dict) and "error" in body, (query, body)
        fuzz_every_route(worker)
    finally:
        assert worker.stop() == 0


#: Values a hostile or careless caller sends: overflowing, non-finite, far-off, malformed.
NASTY = st.sampled_from(
    ["NaN", "inf", "-inf", "1e400", "-99999999999999999999", "9999-12-31", "0001-01-01",
     "9999-12-31T23:59:59Z", "2026-02-30", "2026-01-01T00:00:00", "", " ", "%", "{}", "0",
     "-1", "1:2", "99999999999999999999:x", "at_risk", "day", "quarter"]
)  # fmt: skip
PARAM = st.sampled_from(
    ["start", "end", "granularity", "limit", "cursor", "band", "page", "campaign", "type",
     "feature", "platform", "channel", "priority", "touchpoint", "x"]
)  # fmt: skip
QUERIES = st.dictionaries(PARAM, st.one_of(NASTY, st.text(max_size=12)), max_size=4)


def fuzz_every_route(worker: WorkerProcess) -> None:
    """Every route's query parameters (hypothesis): any input gets a JSON answer, never a 500."""
    from stream.metrics.catalog import CATALOG

    routes = st.one_of(
        st.sampled_from(sorted(CATALOG)).map(lambda m: f"/api/v1/metrics/{m}"),
        st.just("/api/v1/customers"),
        st.text(min_size=1, max_size=12).map(lambda u: f"/api/v1/customers/{quote(u, safe='')}"),
        st.just("/api/v1/metrics"),
    )

    @hypothesis_settings(max_examples=300, deadline=None, database=None)
    @given(routes, QUERIES)
    def one(route: str, params: dict[str, str]) -> None:
        status, body = worker.get(f"{route}?{urlencode(params)}")
        assert status in (200, 400, 404), (route, params, status, body)
        assert isinstance(body, dict), (route, params, body)

    one()


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
