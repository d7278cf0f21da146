"""One typed settings object for every process (worker, demo, simulator, tools).

Read from environment variables (prefix ``STREAM_``; ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``
also without it, because that is what docker-compose and Kubernetes conventionally set) and from
an optional TOML file named by ``STREAM_CONFIG_FILE``. Environment wins over the file.

When ``kafka_bootstrap_servers`` / ``redis_url`` are empty, the process starts its own local
broker and Redis (see :mod:`stream.infra.localstack`); set them to run against real infrastructure.
Every field is documented in ``docs/configuration.md``; keep the two in step.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from stream.contract.types import EventType, Family
from stream.engine.placement import Placement
from stream.metrics.business_hours import WEEKDAYS, BusinessHours, Weekday

__all__ = [
    "MAX_HALF_LIFE_BUCKETS",
    "BusinessHoursSettings",
    "Retention",
    "ScoreActivity",
    "ScoreSettings",
    "Settings",
    "TopicNames",
]

Granularity = Literal["minute", "hour", "day"]
HealthPart = Literal["engagement", "feedback", "support"]
RelayFamily = Literal["social", "support", "feedback", "account"]

#: Events the user did not do do not make the user "active" (metric-definitions.md): what was
#: served or observed (impressions, opened emails, identify calls) and what others or systems
#: did on the user's behalf (solves and closes of the user's tickets, automatic renewals).
DEFAULT_PASSIVE_EVENTS: frozenset[str] = frozenset(
    {
        EventType.IMPRESSION,
        EventType.POST_IMPRESSION,
        EventType.EMAIL_OPENED,
        EventType.IDENTIFY,
        EventType.TICKET_SOLVED,
        EventType.TICKET_CLOSED,
        EventType.SUBSCRIPTION_RENEWED,
    }
)

#: ``author`` values of events done by someone else than the user (ticket events carry the
#: requester's ``user_id`` whoever wrote them): an agent's or a bot's reply, an agent-created
#: ticket, an agent's reopen.
DEFAULT_PASSIVE_AUTHORS: frozenset[str] = frozenset({"agent", "bot"})


class TopicNames(BaseModel):
    """Kafka topic per event family, plus the outputs."""

    clickstream: str = "engagement.clickstream"
    social: str = "engagement.social"
    support: str = "engagement.support"
    feedback: str = "engagement.feedback"
    account: str = "engagement.account"
    dlq: str = "engagement.dlq"
    churn_risk: str = "engagement.churn-risk"

    def inputs(self) -> list[str]:
        return list(self.by_family().values())

    def by_family(self) -> dict[Family, str]:
        """The input topic of each event family (the one place that pairs them)."""
        return {family: getattr(self, family.value) for family in Family}

    def families(self) -> dict[str, str]:
        """Input topic -> family name (what the engine shards by)."""
        return {topic: family.value for family, topic in self.by_family().items()}

    @classmethod
    def with_prefix(cls, prefix: str) -> TopicNames:
        """Every topic under one prefix (isolated runs: tests, the benchmark)."""
        names = {name: f"{prefix}.{name.replace('_', '-')}" for name in cls.model_fields}
        return cls(**names)


class Retention(BaseModel):
    """How long a window's keys live after the window ends (seconds).

    Minute windows are the real-time view (the API's default minute span is an hour; Prometheus
    keeps the exported history): 6 h of them hold a shift's worth at a third of the store's bytes
    that 48 h cost (docs/architecture.md, "Where Redis bytes go").
    """

    minute: int = 6 * 3600
    hour: int = 14 * 86400
    day: int = 400 * 86400

    def for_granularity(self, granularity: str) -> int:
        return int(getattr(self, granularity))


def _default_segment_map() -> dict[str, str]:
    # Segment's e-commerce / B2B SaaS spec names mapped to ours; page/screen calls map by call type.
    return {
        "Product Clicked": EventType.CLICK,
        "Promotion Clicked": EventType.CLICK,
        "Promotion Viewed": EventType.IMPRESSION,
        "Product Viewed": EventType.IMPRESSION,
        "Order Completed": EventType.CONVERSION,
        "Checkout Step Completed": EventType.CONVERSION,
        "Feature Used": EventType.FEATURE_USED,
        "Trial Started": EventType.SUBSCRIPTION_STARTED,
        "Subscription Started": EventType.SUBSCRIPTION_STARTED,
        "Subscription Renewed": EventType.SUBSCRIPTION_RENEWED,
        "Subscription Upgraded": EventType.SUBSCRIPTION_UPGRADED,
        "Subscription Cancelled": EventType.SUBSCRIPTION_CANCELLED,
        "Email Opened": EventType.EMAIL_OPENED,
        "Survey Responded": EventType.NPS_RESPONSE,
    }


class ScoreActivity(BaseModel):
    """One factor of the engagement score (metric-definitions.md)."""

    events: list[str] = Field(min_length=1, description="Event types counted as this activity.")
    weight: int = Field(ge=1, le=100, description="Points at saturation; all weights sum to 100.")
    target: int = Field(ge=1, description="Count in the lookback at which the factor saturates.")
    lookback_seconds: int | None = Field(
        default=None, gt=0, description="Its own lookback (default: score.lookback_seconds)."
    )
    half_life_seconds: int | None = Field(
        default=None,
        gt=0,
        description="Exponential decay with this half-life instead of a lookback.",
    )


#: A half-life of more buckets than this is refused: a silent decayed customer is walked bucket
#: by bucket (for at most ~14 half-lives), so this bounds the work per customer.
MAX_HALF_LIFE_BUCKETS = 1000

_DEFAULT_HEALTH_WEIGHTS: dict[HealthPart, int] = {"engagement": 60, "feedback": 25, "support": 15}


def _default_activities() -> dict[str, ScoreActivity]:
    a = ScoreActivity
    return {
        "page_views": a(events=["page_view", "screen_view"], weight=25, target=60),
        "feature_use": a(events=["feature_used"], weight=20, target=20),
        "purchases": a(events=["conversion", "purchase"], weight=10, target=2),
        "clicks": a(events=["click"], weight=5, target=30),
        "renewals": a(
            events=["subscription_renewed", "subscription_upgraded"], weight=20, target=1
        ),
        "social": a(events=["like", "comment", "share"], weight=10, target=10),
        "email_opens": a(events=["email_opened"], weight=5, target=8),
        "support_contacts": a(events=["ticket_created"], weight=5, target=1),
    }


class ScoreSettings(BaseModel):
    """Engagement score, health score and churn-risk signals (docs/metrics.md)."""

    enabled: bool = Field(
        default=True,
        description="Keep a score per customer. Off: no customer state, no relays into the "
        "clickstream topic, no churn-risk signals; the customer API answers 404.",
    )
    activities: dict[str, ScoreActivity] = Field(default_factory=_default_activities)
    bucket_seconds: int = Field(default=86400, ge=1, description="Evaluation step (a day).")
    lookback_seconds: int = Field(default=30 * 86400, ge=1, description="Activity lookback.")
    drop_points: int = Field(default=20, ge=1, le=100, description="Drop signal: N points ...")
    drop_window_seconds: int = Field(default=7 * 86400, ge=1, description="... within M.")
    health_weights: dict[HealthPart, int] = Field(
        default_factory=lambda: _DEFAULT_HEALTH_WEIGHTS.copy()
    )
    reply_target_seconds: int = Field(default=8 * 3600, ge=1, description="First-reply target.")
    due_limit: int = Field(default=20_000, ge=1, description="Silent re-scores per batch cap.")
    relay_families: list[RelayFamily] = Field(
        default_factory=lambda: list[RelayFamily](["social", "support", "feedback", "account"]),
        description="Families whose score activities and health inputs are relayed into the "
        "clickstream topic, where customer scores live (the workers then write that topic). "
        "A family left out is a missing factor: its weight is renormalised away.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScoreSettings:
        total = sum(a.weight for a in self.activities.values())
        if total != 100:
            raise ValueError(f"score.activities weights must sum to 100, not {total}")
        known = {t.value for t in EventType}
        bad = sorted({e for a in self.activities.values() for e in a.events} - known)
        if bad:
            raise ValueError(f"score.activities name unknown event types: {bad}")
        for name in ("lookback_seconds", "drop_window_seconds"):
            if getattr(self, name) % self.bucket_seconds:
                raise ValueError(f"score.{name} must be a multiple of score.bucket_seconds")
        for key, a in self.activities.items():
            where = f"score.activities.{key}"
            if a.lookback_seconds is not None and a.half_life_seconds is not None:
                raise ValueError(
                    f"{where}: set lookback_seconds or half_life_seconds, not both (an activity "
                    "counts over a lookback or decays with a half-life)"
                )
            for name in ("lookback_seconds", "half_life_seconds"):
                value = getattr(a, name)
                if value is not None and value % self.bucket_seconds:
                    raise ValueError(f"{where}.{name} must be a multiple of score.bucket_seconds")
            if (a.half_life_seconds or 0) > MAX_HALF_LIFE_BUCKETS * self.bucket_seconds:
                raise ValueError(
                    f"{where}.half_life_seconds is more than {MAX_HALF_LIFE_BUCKETS} buckets "
                    "(decay is stepped per bucket): raise score.bucket_seconds"
                )
        if sum(self.health_weights.values()) <= 0:
            raise ValueError("score.health_weights must not all be 0")
        return self


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


class BusinessHoursSettings(BaseModel):
    """Business-hours reply and resolution times of tickets, next to the calendar ones.

    Off by default (Zendesk reports calendar hours unless a schedule is set). The schedule is
    checked at start even while off, so a typo fails the deployment, not the day it is enabled.
    """

    enabled: bool = Field(
        default=False, description="Also report ticket times in business hours (`*_business_*`)."
    )
    timezone: str = Field(
        default="", description="IANA zone of the schedule; empty: the `timezone` setting."
    )
    schedule: dict[Weekday, list[str]] = Field(
        default_factory=lambda: {d: ["09:00-17:00"] for d in WEEKDAYS[:5]},
        description="Weekday -> local [start, end) intervals `HH:MM-HH:MM`; missing days: closed.",
    )
    holidays: list[date] = Field(
        default_factory=list, description="Local dates without business hours (YYYY-MM-DD)."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not value:
            return value
        try:
            return _check_zone(value)
        except ValueError as exc:
            raise ValueError(f"support_business_hours.timezone: {exc}") from None

    @model_validator(mode="after")
    def _valid_schedule(self) -> BusinessHoursSettings:
        try:
            hours = BusinessHours.build(self.schedule, "UTC")
        except ValueError as exc:
            raise ValueError(f"support_business_hours.schedule: {exc}") from None
        if self.enabled and hours.week_ms == 0:
            raise ValueError(
                "support_business_hours.schedule has no business hours in the week; "
                "give it intervals or set support_business_hours.enabled = false"
            )
        return self


class Settings(BaseSettings):
    """All configuration. Field docs are the reference; docs/configuration.md mirrors them."""

    model_config = SettingsConfigDict(
        env_prefix="STREAM_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    # --- infrastructure -------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        default="",
        validation_alias=AliasChoices(
            "STREAM_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"
        ),
        description="host:port[,host:port]. Empty: start a local Tansu broker on a free port.",
    )
    redis_url: str = Field(
        default="",
        validation_alias=AliasChoices("STREAM_REDIS_URL", "REDIS_URL", "redis_url"),
        description="redis:// or rediss:// URL. Empty: start a local redis-server on a free port.",
    )
    topics: TopicNames = Field(default_factory=TopicNames)
    topic_partitions: int = Field(
        default=4, ge=1, description="Partitions when this process creates the topics."
    )
    topic_replication_factor: int = Field(
        default=1, ge=1, description="Replication factor when this process creates the topics."
    )
    consumer_group: str = "engagement-stream"
    consumer_session_timeout_seconds: float = Field(
        default=6.0,
        ge=1,
        description="How long the group waits for a silent worker before giving its partitions "
        "to the others: the handover time after a crash. Kafka refuses values below the "
        "broker's group.min.session.timeout.ms (6 s by default).",
    )
    key_prefix: str = Field(
        default="es",
        pattern=r"^[A-Za-z0-9_.-]{1,32}$",
        description="Prefix of every Redis key this deployment writes.",
    )

    # --- event contract -------------------------------------------------------------------
    max_message_bytes: int = Field(default=64 * 1024, ge=256)
    max_future_skew_seconds: float = Field(
        default=300.0, ge=0, description="Events stamped further in the future are rejected."
    )
    segment_event_map: dict[str, str] = Field(
        default_factory=_default_segment_map,
        description="Segment/RudderStack `track` event name -> our event type.",
    )

    # --- windows and time -----------------------------------------------------------------
    timezone: str = Field(default="UTC", description="IANA zone in which hours and days are cut.")
    granularities: list[Granularity] = Field(
        default_factory=lambda: list[Granularity](["minute", "hour", "day"])
    )
    week_start: Weekday = Field(
        default="mon",
        description="First day of the `week` calendar period (mon: ISO 8601 weeks).",
    )
    allowed_lateness_seconds: float = Field(default=24 * 3600.0, ge=0)
    retention: Retention = Field(default_factory=Retention)

    # --- metric definitions ---------------------------------------------------------------
    passive_events: list[str] = Field(
        default_factory=lambda: sorted(DEFAULT_PASSIVE_EVENTS),
        description="Event types that do not make a user active (DAU/WAU/MAU).",
    )
    gross_margin: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of revenue kept after the cost of sales: predicted_clv = ARPU × "
        "this / churn rate (1: revenue is margin).",
    )
    csat_scale: Literal["1-5", "0-5"] = Field(
        default="1-5",
        description="CSAT answer scale: 1–5 (the industry default) or 0–5 (a 0 is unsatisfied); "
        "4–5 are satisfied on both.",
    )
    passive_authors: list[str] = Field(
        default_factory=lambda: sorted(DEFAULT_PASSIVE_AUTHORS),
        description="`author` values (ticket events) that do not make the event's user active.",
    )
    tracked_pages: list[str] = Field(
        default_factory=lambda: ["/", "/home", "/pricing", "/signup", "/checkout", "/docs"],
        description="Pages with their own page-view series; others count in the total only.",
    )
    max_label_values: int = Field(
        default=50, ge=1, description="Cap on distinct values per dimension (campaign, feature…)."
    )
    sessions_enabled: bool = Field(
        default=True,
        description="Sessionize the clickstream. Off: no open-session state and no session "
        "series; asking for one is a 400.",
    )
    session_timeout_seconds: float = Field(
        default=1800.0, ge=60, le=4 * 3600, description="Inactivity that ends a session."
    )
    session_cap_seconds: float = Field(
        default=86400.0, ge=60, description="A session never lasts longer than this."
    )
    engaged_session_seconds: float = Field(
        default=10.0, ge=0, description="A session longer than this is engaged (GA4: 10 s)."
    )
    bounce_definition: Literal["ga4", "ua"] = Field(
        default="ga4",
        description="ga4: bounce = not engaged; ua: bounce = at most one page view.",
    )
    session_platforms: list[str] = Field(
        default_factory=lambda: ["web", "ios", "android"],
        description="Platform label values of session metrics; others count as `other`.",
    )
    session_channels: list[str] = Field(
        default_factory=lambda: [
            "organic", "paid", "email", "social", "referral", "direct", "affiliate"
        ],
        description="Acquisition channel label values of session metrics; others are `other`.",
    )  # fmt: skip

    ticket_channels: list[str] = Field(
        default_factory=lambda: ["email", "chat", "web", "phone", "social", "api"],
        description="Ticket channel label values (ticket_created `channel`); others are `other`.",
    )
    ticket_priorities: list[str] = Field(
        default_factory=lambda: ["low", "normal", "high", "urgent"],
        description="Ticket priority label values; others count as `other`.",
    )
    ticket_state_ttl_seconds: float = Field(
        default=30 * 86400.0,
        ge=0,
        description="A solved/closed ticket's state is forgotten this long (event time) after "
        "its last event.",
    )
    feedback_touchpoints: list[str] = Field(
        default_factory=lambda: ["after_ticket", "in_app", "email", "web", "sms"],
        description="Survey touchpoint label values; others count as `other`.",
    )
    social_platforms: list[str] = Field(
        default_factory=lambda: [
            "twitter", "x", "linkedin", "instagram", "facebook", "tiktok", "youtube"
        ],
        description="Social platform label values; others count as `other`.",
    )  # fmt: skip
    support_business_hours: BusinessHoursSettings = Field(default_factory=BusinessHoursSettings)
    score: ScoreSettings = Field(default_factory=ScoreSettings)

    # --- engine ---------------------------------------------------------------------------
    batch_max_records: int = Field(default=20_000, ge=1)
    batch_timeout_ms: int = Field(default=200, ge=1)
    store_check_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often a worker compares every owned partition's stored progress with "
        "what it applied (a store that lost it is rebuilt from the log).",
    )
    dedupe_window_events: int = Field(
        default=50_000,
        ge=0,
        description="Per partition: an event_id seen among this many preceding events is a "
        "duplicate (0: off).",
    )
    dlq_give_up_seconds: float = Field(
        default=60.0, gt=0, description="Longest a batch waits for an unreachable DLQ, then drops."
    )

    # --- HTTP / Prometheus ----------------------------------------------------------------
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=0, le=65535)
    web_auth_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token every route but /healthz and /readyz requires. Empty: open.",
    )
    web_auth_token_file: str = Field(
        default="", description="File holding the bearer token (wins over web_auth_token)."
    )

    # --- Kafka security -------------------------------------------------------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_tls_ca_file: str = Field(default="", description="CA bundle; empty: system CAs.")
    kafka_tls_cert_file: str = Field(default="", description="Client certificate (mTLS).")
    kafka_tls_key_file: str = Field(default="", description="Client certificate's key.")

    redis_cluster: bool = Field(
        default=False,
        description="REDIS_URL names a node of a Redis Cluster (any node: the rest is discovered).",
    )
    redis_placement: Placement = Field(
        default=Placement.SPREAD,
        description=(
            "How input partitions map to Redis hash tags: `spread` puts them evenly over a "
            "cluster's slots, `partition` is the plain `{family.partition}` tag of releases "
            "before placements. Recorded in Redis; change it with `stream store migrate`."
        ),
    )

    # --- Redis security -------------------------------------------------------------------
    redis_username: str = Field(default="", description="ACL user (Redis 6+).")
    redis_password: SecretStr = SecretStr("")
    redis_tls_ca_file: str = Field(default="", description="CA bundle for rediss://.")
    redis_tls_cert_file: str = Field(default="", description="Client certificate (mTLS).")
    redis_tls_key_file: str = Field(default="", description="Client certificate's key.")

    @property
    def csat_min(self) -> int:
        """The lowest CSAT answer the decoder accepts."""
        return 0 if self.csat_scale == "0-5" else 1

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _check_zone(value)

    @field_validator("granularities")
    @classmethod
    def _day_is_kept(cls, value: list[str]) -> list[str]:
        # WAU/MAU and every per-day metric are built from day windows.
        if "day" not in value:
            raise ValueError("granularities must include 'day'")
        return sorted(set(value), key=["minute", "hour", "day"].index)

    @field_validator("segment_event_map")
    @classmethod
    def _mapped_types_exist(cls, value: dict[str, str]) -> dict[str, str]:
        known = {t.value for t in EventType}
        bad = sorted(v for v in value.values() if v not in known)
        if bad:
            raise ValueError(f"segment_event_map maps to unknown event types: {bad}")
        return value

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> Settings:
        # Fail at start-up, not at the first broker connection minutes later.
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError("SASL needs kafka_sasl_username and kafka_sasl_password")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("STREAM_CONFIG_FILE")
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(f"STREAM_CONFIG_FILE={config_file} does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def business_hours(self) -> BusinessHours | None:
        """The ticket business-hours schedule, or None when the mode is off."""
        b = self.support_business_hours
        if not b.enabled:
            return None
        return BusinessHours.build(b.schedule, b.timezone or self.timezone, b.holidays)

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with some fields replaced (used to point a process at a started local stack)."""
        return self.model_copy(update=overrides)

    def with_per_user_states(self, *, sessions: bool | None, score: bool | None) -> Settings:
        """A copy with sessions and customer scores switched as asked (None: as configured)."""
        out = self
        if sessions is not None:
            out = out.with_overrides(sessions_enabled=sessions)
        if score is not None:
            out = out.with_overrides(score=out.score.model_copy(update={"enabled": score}))
        return out
