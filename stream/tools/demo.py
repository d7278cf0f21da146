"""``stream demo``: the whole product on one machine, with a live terminal table.

Starts the embedded stack (Tansu + redis-server), one worker process and the simulator in live
mode, warm-started with 10 minutes of history (:class:`DemoTraffic`), as child processes (they die
with us, even on SIGKILL), then polls the worker's own
``/metrics`` — exactly what Prometheus would scrape — and renders the figures. Ctrl-C stops the
children first, then the stack.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from stream.config.settings import ScoreSettings, Settings
from stream.infra.connections import redacted_url
from stream.infra.localstack import die_with_parent, free_port
from stream.infra.runtime import child_environment, with_infrastructure
from stream.service.web_auth import load_token
from stream.tools.health import worker_ready
from stream.tools.scrape import Samples, scrape, total

__all__ = ["DEMO_TIMING", "DemoTraffic", "render", "run_demo"]


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.cli", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )


@dataclass
class RateTracker:
    window: float = 5.0
    points: list[tuple[float, float]] = field(default_factory=list)

    def rate(self, now: float, value: float) -> float:
        self.points.append((now, value))
        self.points = [p for p in self.points if now - p[0] <= self.window] or self.points[-1:]
        (t0, v0), (t1, v1) = self.points[0], self.points[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0


def _one(samples: Samples, name: str, labels: dict[str, str]) -> float | None:
    """The value of one series, or None when it is not exported (e.g. a ratio of nothing)."""
    for series_labels, value in samples.get(name, []):
        if all(series_labels.get(k) == v for k, v in labels.items()):
            return value
    return None


def _pct(samples: Samples, name: str, labels: dict[str, str]) -> float | None:
    value = _one(samples, name, labels)
    return None if value is None else value * 100


def _fmt(value: float | None, pattern: str = "{:,.0f}") -> str:
    return "—" if value is None else pattern.format(value)


def _demo_activities() -> str:
    """The default activities with targets for the demo's 6-minute lookback (the defaults' are
    for 30 days: every customer would sit at risk). Renewals, support contacts and ad clicks are
    too rare in the simulation to reach a target within 6 minutes: they are left out and their
    weight spread over the rest. Social likes and email opens reach the scores through the relay
    (stream.engine.relay), as in production."""
    demo = {"page_views": (45, 2), "feature_use": (30, 1), "purchases": (10, 1), "social": (10, 1),
            "email_opens": (5, 1)}  # fmt: skip
    activities = ScoreSettings().activities
    return json.dumps(
        {
            name: {**activities[name].model_dump(exclude_none=True), "weight": w, "target": t}
            for name, (w, t) in demo.items()
        }
    )


#: Sessions close only once the watermark (max event time − allowed lateness) passes their last
#: event + the inactivity timeout: 24 h 30 min with production defaults. The demo shortens both
#: so that closed sessions show up within minutes; set the variables yourself to override.
DEMO_TIMING = {
    "STREAM_ALLOWED_LATENESS_SECONDS": "60",
    "STREAM_SESSION_TIMEOUT_SECONDS": "120",
    # Scores: minute buckets over a 6-minute lookback, targets to match, so bands move while you
    # watch. With the 2-minute session timeout a user comes back every ~3 minutes at the demo's
    # activity: two sessions per lookback keep the steady users steady (~2 % at risk).
    "STREAM_SCORE__BUCKET_SECONDS": "60",
    "STREAM_SCORE__LOOKBACK_SECONDS": "360",
    "STREAM_SCORE__DROP_WINDOW_SECONDS": "300",
    # Steady users' scores swing by 20+ points as sessions enter and leave so short a lookback:
    # a 40-point drop leaves mostly the fading cohort's (measured: ~60 instead of ~180 a minute).
    "STREAM_SCORE__DROP_POINTS": "40",
    "STREAM_SCORE__ACTIVITIES": _demo_activities(),
}


@dataclass(frozen=True)
class DemoTraffic:
    """The demo's simulator: live, after a warm start.

    It starts ``history_seconds`` in the past (published at ``catch_up_speed``), so that scores
    are settled -- longer than the lookback -- when the live part begins. The fading cohort
    starts to fade ``fade_after_seconds`` into that history and stops coming back over
    ``fade_seconds``: its last sessions leave the 6-minute lookback during the first live
    minutes, so the at-risk count climbs by most of the cohort (~10 % of users) within about 5
    minutes, each crossing counted as an ``entered_at_risk`` transition (tests/unit/test_demo.py
    checks it against the batch reference)."""

    users: int = 3000
    activity: float = 600.0
    seed: int = 7
    fade_seconds: float = 60.0
    history_seconds: float = 600.0
    fade_after_seconds: float = 300.0
    #: The history is published at this many times real time (about 30 s for 10 minutes),
    #: in event-time order across topics: relayed likes and email opens then reach the home
    #: partitions within the 1-minute lateness of the clicks of the same minute.
    catch_up_speed: float = 20.0

    def start_ms(self, now_ms: int) -> int:
        return now_ms - int(self.history_seconds * 1000)

    def args(self, now_ms: int) -> list[str]:
        """``stream simulate`` arguments for a demo starting at ``now_ms``."""
        return [
            "simulate", "--live", "--users", str(self.users), "--activity", str(self.activity),
            "--seed", str(self.seed), "--start", str(self.start_ms(now_ms)),
            "--fade-seconds", str(self.fade_seconds), "--fade-after", str(self.fade_after_seconds),
            "--catch-up-speed", str(self.catch_up_speed),
        ]  # fmt: skip


def _mean(samples: Samples, histogram: str, labels: dict[str, str]) -> float | None:
    count = _one(samples, histogram + "_gcount", labels)
    total_s = _one(samples, histogram + "_gsum", labels)
    return total_s / count if count and total_s is not None else None


def families_table(samples: Samples) -> Table:
    """Support, surveys, social and accounts today (ticket and customer facts settle after the
    1-min demo lateness)."""
    day = {"window": "day"}
    table = Table(title="support, surveys, social and accounts today", expand=True)
    for column in (
        "tickets new/solved",
        "backlog",
        "1st reply avg",
        "full resolution avg",
        "NPS",
        "CSAT",
        "CES",
        "social engagement",
        "followers",
        "subs started/cancelled",
        "churn",
        "revenue",
    ):
        table.add_column(column, justify="right")
    impressions = total(samples, "engagement_social_actions", action="imp", **day)
    engaged = sum(
        total(samples, "engagement_social_actions", action=a, **day)
        for a in ("like", "comment", "share", "save")
    )
    table.add_row(
        f"{_fmt(total(samples, 'engagement_tickets_created', **day))}"
        f" / {_fmt(total(samples, 'engagement_tickets_solved', **day))}",
        _fmt(_one(samples, "engagement_ticket_backlog", {})),
        _fmt(_mean(samples, "engagement_ticket_first_reply_seconds", day), "{:,.0f} s"),
        _fmt(_mean(samples, "engagement_ticket_full_resolution_seconds", day), "{:,.0f} s"),
        _fmt(_one(samples, "engagement_nps", day), "{:+.0f}"),
        _fmt(_pct(samples, "engagement_csat_ratio", day), "{:.1f} %"),
        _fmt(_one(samples, "engagement_ces_score", day), "{:.2f}"),
        _fmt(engaged / impressions * 100 if impressions else None, "{:.2f} %"),
        _fmt(total(samples, "engagement_social_followers")),
        f"{_fmt(total(samples, 'engagement_subscription_events', event='started', **day))}"
        f" / {_fmt(total(samples, 'engagement_subscription_events', event='cancelled', **day))}",
        _fmt(_pct(samples, "engagement_churn_ratio", day), "{:.2f} %"),
        _fmt(_one(samples, "engagement_revenue", day), "{:,.2f}"),
    )
    return table


def render(samples: Samples, events_per_s: float, urls: Iterable[str]) -> Group:
    day = {"window": "day"}
    dau = total(samples, "engagement_dau")
    mau = total(samples, "engagement_mau")
    imps = total(samples, "engagement_impressions", **day)
    clicks = total(samples, "engagement_clicks", **day)
    headline = Table(title="engagement-stream — live (current day, event time)", expand=True)
    for column in (
        "events/s",
        "applied",
        "rejected",
        "DAU",
        "WAU",
        "MAU",
        "stickiness",
        "page views",
        "CTR",
        "conversions",
    ):
        headline.add_column(column, justify="right")
    headline.add_row(
        _fmt(events_per_s),
        _fmt(total(samples, "stream_events_applied_total")),
        _fmt(total(samples, "stream_events_rejected_total")),
        _fmt(dau),
        _fmt(total(samples, "engagement_wau")),
        _fmt(mau),
        _fmt(dau / mau * 100 if mau else None, "{:.1f} %"),
        _fmt(total(samples, "engagement_page_views", **day)),
        _fmt(clicks / imps * 100 if imps else None, "{:.2f} %"),
        _fmt(total(samples, "engagement_conversions", **day)),
    )
    sessions = Table(
        title="sessions today (closed; demo: 2-min timeout, 1-min lateness)", expand=True
    )
    for column in (
        "sessions",
        "avg duration",
        "engagement rate",
        "bounce rate",
        "conversion",
        "pages/session",
    ):
        sessions.add_column(column, justify="right")  # fmt: skip
    ratio_pct = "{:.1f} %"
    sessions.add_row(
        _fmt(total(samples, "engagement_sessions", **day)),
        _fmt(_one(samples, "engagement_session_duration_avg_seconds", day), "{:,.0f} s"),
        _fmt(_pct(samples, "engagement_session_engagement_ratio", day), ratio_pct),
        _fmt(_pct(samples, "engagement_session_bounce_ratio", day), ratio_pct),
        _fmt(_pct(samples, "engagement_session_conversion_ratio", day), ratio_pct),
        _fmt(_one(samples, "engagement_pages_per_session", day), "{:.2f}"),
    )
    by_type = Table("event type", "today", title="events by type", expand=True)
    for labels, value in sorted(samples.get("engagement_events", []), key=lambda lv: -lv[1]):
        if labels.get("window") == "day":
            by_type.add_row(labels["type"], _fmt(value))
    features = Table("feature", "users today", "adoption", title="feature adoption", expand=True)
    adoption = {
        lab["feature"]: v for lab, v in samples.get("engagement_feature_adoption_ratio", [])
    }
    for labels, value in sorted(samples.get("engagement_feature_users", []), key=lambda lv: -lv[1]):
        share = adoption.get(labels["feature"])
        features.add_row(
            labels["feature"], _fmt(value), _fmt(None if share is None else share * 100, "{:.1f} %")
        )
    bands = Table(
        "at risk",
        "engaged",
        "highly",
        "entered at risk",
        "dropped",
        title="customers per score band (event time, 1-min lateness); churn-risk transitions",
        expand=True,
    )
    bands.add_row(
        *(
            _fmt(total(samples, "engagement_score_band_customers", band=b))
            for b in ("at_risk", "engaged", "highly")
        ),
        *(
            _fmt(total(samples, "stream_churn_risk_transitions_total", reason=r))
            for r in ("entered_at_risk", "dropped")
        ),
    )
    side = Table.grid(expand=True)
    side.add_row(by_type, features)
    return Group(
        headline,
        sessions,
        families_table(samples),
        bands,
        side,
        Panel("\n".join(urls), title="endpoints (Ctrl-C stops everything)"),
    )


def run_demo(settings: Settings, traffic: DemoTraffic, *, web_port: int) -> None:
    console = Console()
    settings, stack = with_infrastructure(settings)
    assert stack is not None or settings.redis_url
    workdir = Path(stack.workdir if stack is not None and stack.workdir else "/tmp")
    port = web_port if web_port else free_port()
    env = {**child_environment(settings), "STREAM_WEB_PORT": str(port), **DEMO_TIMING}
    env.update({k: v for k, v in os.environ.items() if k in DEMO_TIMING})  # yours win
    children = [spawn(["--log-level", "info", "worker"], env, workdir / "worker.log")]
    base = f"http://{settings.web_host}:{port}"
    urls = [
        f"metrics     {base}/metrics",
        f"HTTP API    {base}/api/v1/metrics   e.g. {base}/api/v1/metrics/dau?granularity=day",
        f"health      {base}/healthz  {base}/readyz",
        f"kafka       {settings.kafka_bootstrap_servers}",
        f"redis       {redacted_url(settings.redis_url)}",
        f"logs        {workdir}/worker.log, {workdir}/simulator.log",
    ]
    token = load_token(settings)
    rates = RateTracker()
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        with Live(Panel("starting worker…"), console=console, refresh_per_second=2) as live:
            while not stop:
                for child in children:
                    if child.poll() is not None:
                        raise SystemExit(f"a child process exited ({child.args!r}); see {workdir}")
                if len(children) == 1:
                    # Traffic starts once the worker holds its partitions: a backlog built up
                    # during its group join would be read clicks first, relayed activities after.
                    if not worker_ready(base):
                        live.update(Panel("waiting for the worker…\n" + "\n".join(urls)))
                        time.sleep(0.5)
                        continue
                    now_ms = int(time.time() * 1000)
                    children.append(spawn(traffic.args(now_ms), env, workdir / "simulator.log"))
                try:
                    samples = scrape(f"{base}/metrics", token)
                except OSError:
                    live.update(Panel("waiting for the worker's HTTP server…\n" + "\n".join(urls)))
                else:
                    applied = total(samples, "stream_events_applied_total")
                    live.update(render(samples, rates.rate(time.monotonic(), applied), urls))
                time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        if stack is not None:
            stack.stop()
        console.print("stopped.")
