"""Deterministic synthetic engagement traffic: the demo's live input and the benchmarks'.

A discrete-event simulation: every user is a generator of their own events in time order
(sessions of clickstream events separated by long inactivity, social actions), ticket lifecycles
and subscriptions are generators of their own, and a heap merges them into one stream ordered by
event time — except that some tickets' creation is delivered just after their bot auto-reply
(``delayed_ticket_created``), seconds out of order, as helpdesk webhooks do. A cohort of users
fades out (their rates decay quadratically to zero over ``fade_seconds`` from ``fade_start_ms``,
by default the start) — the future churn risks. Same config, same stream: only
``random.Random`` seeded from the config is used.

Pure: no I/O and no clock. Callers decide where events go and when (see ``stream.tools.emit``).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from stream.contract.types import FAMILY_OF, EventType, Family

__all__ = [
    "DAY",
    "HOUR",
    "MINUTE",
    "SimEvent",
    "SimulationConfig",
    "Simulator",
    "session_gap_floor",
    "take",
]

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
#: A user's sessions are at least this far apart by default: longer than the default session
#: timeout (30 minutes), so the worker sees them as separate sessions.
SESSION_GAP_FLOOR_SECONDS = 31 * 60


def session_gap_floor(session_timeout_seconds: float) -> float:
    """The shortest gap between a user's sessions that a worker with this session timeout still
    sees as two sessions (the timeout and a minute: 31 minutes with the default timeout)."""
    return session_timeout_seconds + 60


@dataclass(frozen=True)
class SimulationConfig:
    seed: int = 42
    users: int = 2000
    start_ms: int = 1_767_225_600_000
    fading_fraction: float = 0.1
    fade_seconds: float = 14 * 86400
    #: When the fading cohort starts to fade (None: at ``start_ms``). The live demo simulates
    #: some history first, so that scores are settled when the cohort starts to fade.
    fade_start_ms: int | None = None
    activity: float = 1.0
    #: Shortest gap between a user's sessions: more than the worker's session timeout (``stream
    #: simulate`` derives it from the settings: the demo's 2-minute timeout allows 3 minutes).
    #: It caps how often an active user comes back, whatever ``activity`` says.
    session_gap_floor_seconds: float = SESSION_GAP_FLOOR_SECONDS
    campaigns: tuple[str, ...] = ("spring_sale", "retarget", "newsletter", "brand")
    placements: tuple[str, ...] = ("top_banner", "sidebar", "feed")
    pages: tuple[str, ...] = ("/", "/home", "/pricing", "/signup", "/checkout", "/docs",
                              "/blog", "/features", "/account", "/help")  # fmt: skip
    features: tuple[str, ...] = ("export", "dashboards", "alerts", "sharing", "api", "sso")
    platforms: tuple[str, ...] = ("web", "ios", "android")
    channels: tuple[str, ...] = ("organic", "paid", "social", "email", "referral", "direct")
    social_platforms: tuple[str, ...] = ("twitter", "linkedin", "instagram")
    #: Share of tickets whose bot auto-reply is delivered before the ticket_created (a webhook
    #: race, seconds apart): the out-of-order lifecycles the ticket metrics must survive.
    delayed_ticket_created: float = 0.25


@dataclass(frozen=True)
class SimEvent:
    family: Family
    event: dict[str, Any]
    ts_ms: int


@dataclass
class _User:
    uid: str
    platform: str
    channel: str
    plan: str
    level: float  # heavy-tailed activity multiplier
    account: str | None
    fading: bool


# A process yields (ts_ms, event type, properties, session id) in nondecreasing ts.
_Step = tuple[int, str, dict[str, Any], str | None]


class Simulator:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        rng = random.Random(config.seed)
        self._users = [self._make_user(i, rng) for i in range(config.users)]
        self._rng = random.Random(config.seed * 7919 + 1)

    def _make_user(self, i: int, rng: random.Random) -> _User:
        c = self.config
        platform = rng.choices(c.platforms, weights=(6, 2.5, 1.5)[: len(c.platforms)])[0]
        return _User(
            uid=f"u{i:06d}",
            platform=platform,
            channel=rng.choice(c.channels),
            plan=rng.choices(("free", "pro", "business"), weights=(6, 3, 1))[0],
            level=min(8.0, rng.paretovariate(2.2)),
            account=f"acct{i // 5:05d}" if rng.random() < 0.5 else None,
            fading=rng.random() < c.fading_fraction,
        )

    @property
    def _fade_start(self) -> int:
        c = self.config
        return c.start_ms if c.fade_start_ms is None else c.fade_start_ms

    def fading_users(self) -> frozenset[str]:
        return frozenset(u.uid for u in self._users if u.fading)

    # ---- rates ---------------------------------------------------------------------------
    def _fade(self, user: _User, ts: int) -> float:
        if not user.fading:
            return 1.0
        elapsed = max(0, ts - self._fade_start) / (self.config.fade_seconds * 1000)
        # Quadratic: engagement erodes slowly at first, then the user goes quiet for good.
        return max(0.0, 1.0 - elapsed) ** 2

    def _gap(self, rng: random.Random, user: _User, ts: int, mean_ms: float) -> int | None:
        """Time to the user's next action; None once a fading user has gone silent."""
        rate = self.config.activity * user.level * self._fade(user, ts)
        if rate <= 1e-3:
            return None
        return int(rng.expovariate(rate / mean_ms)) + 1

    def _first(self, rng: random.Random, window_ms: int) -> int:
        """When a process starts: spread over ``window_ms`` from the start, shrunk by the
        activity factor — users N times as active show up N times sooner. Without that, the
        live demo (activity 60) spent its first minutes at ~1 event/s while 3000 users' first
        sessions trickled in over 6 hours. At activity <= 1 the draws are unchanged."""
        return self.config.start_ms + int(
            rng.uniform(0, window_ms / max(self.config.activity, 1.0))
        )

    # ---- processes -----------------------------------------------------------------------
    def events(self) -> Iterator[SimEvent]:
        rng = self._rng
        heap: list[tuple[int, int, Iterator[_Step], _User, _Step]] = []
        seq = 0

        def push(proc: Iterator[_Step], user: _User) -> _Step | None:
            nonlocal seq
            step = next(proc, None)
            if step is not None:
                seq += 1
                heapq.heappush(heap, (step[0], seq, proc, user, step))
            return step

        for user in self._users:
            push(self._sessions(rng, user), user)
            push(self._social(rng, user), user)
            push(self._account(rng, user), user)
        counter = 0
        seed = self.config.seed
        held: dict[str, SimEvent] = {}  # ticket id -> its creation, delivered after the bot reply
        while heap:
            ts, _, proc, user, (_, kind, props, session) = heapq.heappop(heap)
            counter += 1
            body: dict[str, Any] = {"event_id": f"sim{seed}-{counter}", "type": kind, "ts": ts,
                                    "user_id": user.uid, "properties": props}  # fmt: skip
            if session is not None:
                body["session_id"] = session
            if user.account is not None:
                body["account_id"] = user.account
            if kind == EventType.TICKET_CREATED:
                first = push(self._ticket(rng, user, ts, props), user)
                bot_first = first is not None and first[2].get("author") == "bot"
                if bot_first and rng.random() < self.config.delayed_ticket_created:
                    held[props["ticket_id"]] = SimEvent(Family.SUPPORT, body, ts)
                    push(proc, user)
                    continue
            yield SimEvent(FAMILY_OF[EventType(kind)], body, ts)
            late_created = held.pop(props.get("ticket_id", ""), None) if held else None
            if late_created is not None:
                yield late_created  # stamped seconds before the reply just delivered
            push(proc, user)

    def _sessions(self, rng: random.Random, user: _User) -> Iterator[_Step]:
        c = self.config
        ts = self._first(rng, 6 * HOUR)
        n = 0
        mobile = user.platform != "web"
        view = EventType.SCREEN_VIEW.value if mobile else EventType.PAGE_VIEW.value
        while True:
            n += 1
            sid = f"{user.uid}-s{n}"
            base = {"platform": user.platform, "channel": user.channel}
            pages = 1 if rng.random() < 0.3 else 1 + int(rng.expovariate(1 / 4))
            for p in range(pages):
                if p:
                    ts += int(rng.uniform(4_000, 90_000))
                page = c.pages[min(int(rng.expovariate(0.45)), len(c.pages) - 1)]
                yield ts, view, {**base, "page": page}, sid
                if rng.random() < 0.02 and pages > 1:
                    campaign, placement = rng.choice(c.campaigns), rng.choice(c.placements)
                    ts += int(rng.uniform(1_000, 5_000))  # orphan: no impression before
                    yield ts, "click", {**base, "campaign": campaign, "placement": placement}, sid
                if rng.random() < 0.5 and pages > 1:
                    campaign, placement = rng.choice(c.campaigns), rng.choice(c.placements)
                    ts += int(rng.uniform(200, 2_000))
                    yield (
                        ts,
                        "impression",
                        {**base, "campaign": campaign, "placement": placement},
                        sid,
                    )
                    if rng.random() < 0.06:
                        ts += int(rng.uniform(1_000, 8_000))
                        yield (
                            ts,
                            "click",
                            {**base, "campaign": campaign, "placement": placement},
                            sid,
                        )
                        if rng.random() < 0.12:
                            ts += int(rng.uniform(10_000, 120_000))
                            amount = round(rng.uniform(5, 300), 2)
                            yield (
                                ts,
                                "conversion",
                                {**base, "campaign": campaign, "amount": amount},
                                sid,
                            )
                if rng.random() < 0.25 and pages > 1:
                    feature = c.features[min(int(rng.expovariate(0.7)), len(c.features) - 1)]
                    ts += int(rng.uniform(2_000, 30_000))
                    yield ts, "feature_used", {"platform": user.platform, "feature": feature}, sid
            if rng.random() < 0.015:
                ts += int(rng.uniform(5_000, 60_000))
                yield (
                    ts,
                    "ticket_created",
                    {
                        "ticket_id": f"{user.uid}-t{n}",
                        "priority": rng.choices(
                            ("low", "normal", "high", "urgent"), (3, 5, 2, 0.5)
                        )[0],
                        "channel": rng.choice(("email", "chat", "web")),
                        **({"author": "agent"} if rng.random() < 0.05 else {}),
                    },
                    None,
                )
            if rng.random() < 0.01:
                ts += int(rng.uniform(5_000, 60_000))
                yield (
                    ts,
                    "ces_response",
                    {"score": self._score(rng, user, ts, 1, 7), "touchpoint": "in_app"},
                    None,
                )
            gap = self._gap(rng, user, ts, 14 * HOUR)
            if gap is None:
                return
            ts += max(gap, int(c.session_gap_floor_seconds * 1000))

    def _social(self, rng: random.Random, user: _User) -> Iterator[_Step]:
        c = self.config
        ts = self._first(rng, 12 * HOUR)
        while True:
            platform = rng.choice(c.social_platforms)
            for _ in range(rng.randint(2, 8)):
                post = f"p{rng.randrange(500)}"
                ts += int(rng.uniform(500, 20_000))
                yield ts, "post_impression", {"platform": platform, "post_id": post}, None
                roll = rng.random()
                for kind, p in (
                    ("like", 0.06),
                    ("comment", 0.012),
                    ("share", 0.01),
                    ("save", 0.008),
                ):
                    if roll < p:
                        ts += int(rng.uniform(500, 5_000))
                        yield ts, kind, {"platform": platform, "post_id": post}, None
                        break
                    roll -= p
            extra = rng.random()
            if extra < 0.03:
                ts += 1_000
                yield ts, "follow", {"platform": platform}, None
            elif extra < 0.04:
                ts += 1_000
                yield ts, "unfollow", {"platform": platform}, None
            elif extra < 0.05:
                ts += 1_000
                yield (
                    ts,
                    "mention",
                    {"platform": platform, "post_id": f"p{rng.randrange(500)}"},
                    None,
                )
            gap = self._gap(rng, user, ts, 30 * HOUR)
            if gap is None:
                return
            ts += gap

    def _ticket(
        self, rng: random.Random, user: _User, ts: int, created: dict[str, Any]
    ) -> Iterator[_Step]:
        tid = created["ticket_id"]
        if rng.random() < 0.4:
            ts += int(rng.uniform(2_000, 10_000))
            yield ts, "ticket_replied", {"ticket_id": tid, "author": "bot", "public": True}, None
        replies = 2 if created.get("author") == "agent" else 1
        for _ in range(replies):
            ts += int(rng.expovariate(1 / (2 * HOUR))) + MINUTE
            yield ts, "ticket_replied", {"ticket_id": tid, "author": "agent", "public": True}, None
        if rng.random() < 0.5:
            ts += int(rng.expovariate(1 / HOUR)) + MINUTE
            yield (
                ts,
                "ticket_replied",
                {"ticket_id": tid, "author": "requester", "public": True},
                None,
            )
        ts += int(rng.expovariate(1 / (6 * HOUR))) + MINUTE
        yield ts, "ticket_solved", {"ticket_id": tid}, None
        if rng.random() < 0.1:
            ts += int(rng.uniform(HOUR, DAY))
            yield ts, "ticket_reopened", {"ticket_id": tid}, None
            ts += int(rng.expovariate(1 / (4 * HOUR))) + MINUTE
            yield ts, "ticket_replied", {"ticket_id": tid, "author": "agent", "public": True}, None
            ts += int(rng.expovariate(1 / (4 * HOUR))) + MINUTE
            yield ts, "ticket_solved", {"ticket_id": tid}, None
        if rng.random() < 0.4:
            ts += int(rng.uniform(MINUTE, HOUR))
            score = self._score(rng, user, ts, 1, 5)
            yield (
                ts,
                "csat_response",
                {"score": score, "touchpoint": "after_ticket", "ticket_id": tid},
                None,
            )
        ts += int(rng.uniform(3 * DAY, 5 * DAY))
        yield ts, "ticket_closed", {"ticket_id": tid}, None

    def _account(self, rng: random.Random, user: _User) -> Iterator[_Step]:
        c = self.config
        ts = self._first(rng, 2 * DAY)
        subscribed = user.plan != "free" or rng.random() < 0.3
        plan = user.plan if user.plan != "free" else "pro"
        if subscribed:
            yield (
                ts,
                "subscription_started",
                {"plan": plan, "amount": 29.0 if plan == "pro" else 99.0},
                None,
            )
        renew_at = ts + 30 * DAY
        cancel_at = None
        if user.fading and subscribed and rng.random() < 0.7:
            cancel_at = self._fade_start + int(c.fade_seconds * 1000 * rng.uniform(0.6, 1.0))
        elif subscribed and rng.random() < 0.02:
            cancel_at = ts + int(rng.uniform(5 * DAY, 60 * DAY))
        while True:
            gap = self._gap(rng, user, ts, 3 * DAY)
            nxt = ts + gap if gap is not None else None
            if (
                subscribed
                and cancel_at is not None
                and (nxt is None or cancel_at <= min(nxt, renew_at))
            ):
                ts = max(ts, cancel_at)
                yield ts, "subscription_cancelled", {"plan": plan}, None
                subscribed = False
                cancel_at = None
                continue
            if subscribed and (nxt is None or renew_at <= nxt):
                ts = max(ts, renew_at)
                yield (
                    ts,
                    "subscription_renewed",
                    {"plan": plan, "amount": 29.0 if plan == "pro" else 99.0},
                    None,
                )
                renew_at = ts + 30 * DAY
                continue
            if nxt is None:
                return
            ts = nxt
            roll = rng.random()
            if roll < 0.5:
                yield ts, "email_opened", {"channel": "email"}, None
            elif roll < 0.62:
                yield (
                    ts,
                    "purchase",
                    {"amount": round(rng.uniform(3, 120), 2), "currency": "USD"},
                    None,
                )
            elif roll < 0.8:
                touch = rng.choice(("in_app", "email"))
                yield (
                    ts,
                    "nps_response",
                    {"score": self._score(rng, user, ts, 0, 10), "touchpoint": touch},
                    None,
                )
            elif roll < 0.84 and subscribed and plan == "pro":
                plan = "business"
                yield ts, "subscription_upgraded", {"plan": plan, "amount": 99.0}, None
            else:
                yield (
                    ts,
                    "csat_response",
                    {"score": self._score(rng, user, ts, 1, 5), "touchpoint": "email"},
                    None,
                )

    def _score(self, rng: random.Random, user: _User, ts: int, low: int, high: int) -> int:
        """Happy users answer high, fading users increasingly low."""
        mood = 0.85 * self._fade(user, ts) if user.fading else 0.8
        value = low + (high - low) * min(1.0, max(0.0, rng.gauss(mood, 0.2)))
        return round(value)


def take(it: Iterator[SimEvent], n: int) -> list[SimEvent]:
    out = []
    for ev in it:
        out.append(ev)
        if len(out) >= n:
            break
    return out
