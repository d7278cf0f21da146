"""The faust shell: build the faust application around the engine that :mod:`stream.config.wiring`
builds from settings.

Nothing in the package imports a global app; this module adds the HTTP API, ``/metrics`` and the
health pages to the engine and publishers, and hands back one object.
faust provides the shell — worker lifecycle and signals, the producer (dead letters), the web
server (API, ``/metrics``, health) — while the hot path is the batched
:class:`~stream.engine.consumer.BatchEngine` service.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.config import wiring
from stream.config.settings import Settings
from stream.engine.consumer import BatchEngine
from stream.engine.worker_metrics import WorkerMetrics
from stream.infra.topics import ensure_topics
from stream.metrics.reader import QueryError
from stream.metrics.score import read as score_read
from stream.service import web_auth
from stream.service.credentials import faust_broker_credentials
from stream.serving.exporter import BusinessExporter
from stream.serving.query import SCORE_OFF, UnknownMetric, customer_report, list_metrics, run_query

__all__ = ["Application", "build_app"]

log = logging.getLogger(__name__)


@dataclass
class Application:
    app: faust.App
    engine: BatchEngine
    metrics: WorkerMetrics
    settings: Settings


def _throwaway_datadir() -> str:
    path = tempfile.mkdtemp(prefix="engagement-stream-faust-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def build_app(settings: Settings) -> Application:
    if not settings.kafka_bootstrap_servers or not settings.redis_url:
        raise ValueError("build_app needs kafka_bootstrap_servers and redis_url (see localstack)")
    metrics = WorkerMetrics()
    app = faust.App(
        f"{settings.consumer_group}-shell",
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        # faust keeps table files under its data dir (default: ./<app id>-data in the working
        # directory); state lives in Redis here, so a throwaway directory does.
        datadir=_throwaway_datadir(),
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.topic_partitions,
        # Tansu (and a cold KRaft broker) otherwise holds the first group join ~30 s.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=6.0,
        producer_acks=-1,
        broker_credentials=faust_broker_credentials(settings),
        # faust's own pages (partition routing, table contents) serve nothing here.
        web_router_enabled=False,
        web_tables_enabled=False,
    )
    token = web_auth.load_token(settings)
    web_auth.install(app, token)
    if token is None and settings.web_host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("HTTP API and /metrics on %s without a bearer token", settings.web_host)

    async def send(topic: str, key: bytes | None, value: bytes) -> Any:
        return await app.producer.send(topic, key, value, None, None, None)

    engine = wiring.build_engine(settings, metrics, send)
    # The customer state is the only writer of both outboxes: no scores, no publishers.
    publishers = (
        [
            wiring.build_churn_publisher(settings, engine, metrics),
            wiring.build_relay_publisher(settings, engine, metrics),
        ]
        if settings.score.enabled
        else []
    )
    reader = wiring.build_reader(settings)
    options = wiring.metric_options(settings)
    windows = wiring.build_windows(settings)
    exporter = BusinessExporter(
        reader, windows, settings.granularities, settings.max_label_values, options
    )

    @app.task  # type: ignore[untyped-decorator]
    async def start_engine() -> None:
        await ensure_topics(settings)
        await app.add_runtime_dependency(engine)
        for publisher in publishers:
            await app.add_runtime_dependency(publisher)

    @app.page("/api/v1/metrics")
    async def metrics_index(view: faust.web.View, request: faust.web.Request) -> Any:
        return view.json({"metrics": list_metrics()})

    @app.page("/api/v1/metrics/{name}")
    async def metric_series(view: faust.web.View, request: faust.web.Request, name: str) -> Any:
        try:
            body = await run_query(name, dict(request.query), reader, windows, options)
        except UnknownMetric:
            return view.json({"error": f"unknown metric {name!r}"}, status=404)
        except QueryError as exc:
            return view.json({"error": str(exc)}, status=400)
        return view.json(body)

    rules = wiring.score_rules(settings)

    # any id the decoder accepts ({, }, an encoded / or newline…): the default pattern stops at
    # braces, and `.` at a newline
    @app.page(r"/api/v1/customers/{user_id:[\s\S]+}")
    async def customer_page(view: faust.web.View, request: faust.web.Request, user_id: str) -> Any:
        if not settings.score.enabled:
            return view.json({"error": SCORE_OFF}, status=404)
        body = await customer_report(user_id, reader, rules)
        if body is None:
            return view.json({"error": "unknown customer"}, status=404)
        return view.json(body)

    @app.page("/api/v1/customers")
    async def customers_page(view: faust.web.View, request: faust.web.Request) -> Any:
        if not settings.score.enabled:
            return view.json({"error": SCORE_OFF}, status=404)
        try:
            _, limit, cursor = score_read.list_params(dict(request.query))
        except ValueError as exc:
            return view.json({"error": str(exc)}, status=400)
        return view.json(await score_read.at_risk(reader, limit, cursor))

    @app.page("/metrics")
    async def prometheus(view: faust.web.View, request: faust.web.Request) -> Any:
        try:
            payload = await exporter.render(metrics.registry)
        except Exception as exc:  # Redis down: still expose operational series
            log.warning("business gauges unavailable: %s", type(exc).__name__)
            payload = generate_latest(metrics.registry)
        return view.bytes(payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(view: faust.web.View, request: faust.web.Request) -> Any:
        return view.json({"status": "ok", "time": time.time()})

    @app.page("/readyz")
    async def readyz(view: faust.web.View, request: faust.web.Request) -> Any:
        try:
            await reader.client.ping()
        except Exception:
            return view.json({"ready": False, "reason": "redis unreachable"}, status=503)
        if not engine.ready.is_set():
            return view.json({"ready": False, "reason": "no partition assignment yet"}, status=503)
        if engine.rebuilding:
            body = {"ready": False, "reason": "rebuilding", "partitions": len(engine.rebuilding)}
            return view.json(body, status=503)
        return view.json({"ready": True, "partitions": len(engine.partitions)})

    return Application(app, engine, metrics, settings)
