"""Customer scores as engine keyed state: the I/O-free shell around :mod:`stream.metrics.score`.

One hash field per customer (a digest of the user id) holds the packed :class:`Customer`; its due
time is the next boundary at which the score can change, so the engine re-reads a silent customer
when the watermark gets there. Everything a score change implies is written in the same
offset-guarded apply as the state itself, so it is exactly-once too:

* running totals per partition (``t:cus``): customers per band, per score bucket, per
  (acquisition channel, band) -- the scrape-time gauges sum them across partitions;
* the at-risk ranking (``z:atrisk``): member = user id, score = engagement score;
* the churn-risk outbox (``ob:churn``): one JSON message per transition, drained to Kafka by
  :mod:`stream.engine.outbox`.

User ids stay out of keys and hash fields (digests); they are stored in the state value, the
ranking and the outbox because the read side and CRMs need them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from stream.contract.decode import Event
from stream.contract.types import EventType
from stream.engine.deltas import Deltas, pair_digest
from stream.metrics.clickstream import NOT_SET
from stream.metrics.score import (
    AT_RISK,
    HOME_FAMILY,
    Customer,
    Hit,
    ScoreRules,
    Transition,
    activity_index,
    advance,
    band_of,
    bucket_label,
    pack,
    unpack,
)

Handler = Callable[[Event, int, Deltas], None]

NAME = "cus"
TOTALS = "cus"
AT_RISK_SET = "atrisk"
OUTBOX = "churn"
OTHER = "other"
SCORE_SUM = "score_sum"  # sum of current scores (the gauge histogram's _gsum)

_HEALTH_EVENTS = frozenset(
    t.value
    for t in (
        EventType.NPS_RESPONSE,
        EventType.CSAT_RESPONSE,
        EventType.TICKET_CREATED,
        EventType.TICKET_REOPENED,
        EventType.TICKET_REPLIED,
        EventType.TICKET_SOLVED,
        EventType.TICKET_CLOSED,
    )
)


def totals_fields(band: str, score: int, channel: str) -> tuple[str, ...]:
    """The running-total fields one scored customer counts in."""
    return (f"band|{band}", f"score|{bucket_label(score)}", f"channel|{channel}|{band}")


def transition_message(
    user: str, t: Transition, rules: ScoreRules, health: int, channel: str
) -> str:
    """The churn-risk record CRMs consume (its id and seq are added by the publisher)."""
    return orjson.dumps(
        {
            "customer": user,
            "reason": t.reason,
            "old_score": t.old_score,
            "new_score": t.new_score,
            "old_band": band_of(t.old_score),
            "new_band": band_of(t.new_score),
            "fell": list(t.fell),
            "ts": t.boundary * rules.bucket_ms,
            "health_score": health,
            "channel": channel,
        }
    ).decode()


class CustomerState:
    """Per-customer score state, hosted on the home family's partitions."""

    name = NAME
    families = frozenset({HOME_FAMILY})

    def __init__(
        self, rules: ScoreRules, channels: frozenset[str], due_limit: int = 20_000
    ) -> None:
        self.rules = rules
        self.due_limit = due_limit
        self.channels = channels
        self._fields: dict[str, str] = {}  # user -> field (memoised digests, bounded)
        self._users: dict[str, str] = {}  # field -> user, for customers seen the first time
        counted = set(activity_index(rules)) | _HEALTH_EVENTS
        self._types = sorted(counted)

    def handlers(self) -> dict[str, Handler]:
        return {t: self.hit for t in self._types}

    def hit(self, event: Event, minute: int, deltas: Deltas) -> None:
        props = event.props
        per_key = deltas.keyed.get(NAME)
        if per_key is None:
            per_key = deltas.keyed[NAME] = {}
        ch = props.channel
        channel = NOT_SET if ch is None else (ch if ch in self.channels else OTHER)
        item = Hit(
            event.ts_ms,
            event.type,
            channel,
            props.ticket_id or "",
            -1 if props.score is None else props.score,
            props.author or "",
        )
        items = per_key.get(event.user_id)
        if items is None:
            per_key[event.user_id] = [item]
        else:
            items.append(item)

    def field_of(self, key: str) -> str:
        digest = self._fields.get(key)
        if digest is None:
            if len(self._fields) >= 200_000:
                self._fields.clear()
                self._users.clear()
            digest = self._fields[key] = pair_digest("customer", key)
            self._users[digest] = key
        return digest

    def settle(
        self,
        stored: Mapping[str, bytes | None],
        items: Mapping[str, list[Any]],
        watermark: int,
        deltas: Deltas,
    ) -> dict[str, tuple[str | None, int | None]]:
        rules = self.rules
        n = len(rules.activities)
        updates: dict[str, tuple[str | None, int | None]] = {}
        for name in stored.keys() | items.keys():
            hits: list[Hit] = items.get(name, [])
            raw = stored.get(name)
            if raw is not None:
                c = unpack(raw, n)
            elif hits:
                c = Customer(self._users[name])  # field_of() named it for this batch
            else:
                continue
            before = (c.band, c.score, c.channel)
            transitions, due = advance(c, sorted(hits), watermark, rules)
            self._account(c, before, deltas)
            for t in transitions:
                msg = transition_message(c.user, t, rules, c.health, c.channel)
                deltas.outbox.setdefault(OUTBOX, []).append(msg)
            updates[name] = (pack(c), -1 if due is None else due)
        return updates

    @staticmethod
    def _account(c: Customer, before: tuple[str | None, int, str], deltas: Deltas) -> None:
        band, score, channel = before
        if (band, score, channel) == (c.band, c.score, c.channel):
            return
        if band is not None:
            for f in totals_fields(band, score, channel):
                deltas.total(TOTALS, f, -1)
            deltas.total(TOTALS, SCORE_SUM, -score)
        if c.band is not None:
            for f in totals_fields(c.band, c.score, c.channel):
                deltas.total(TOTALS, f, 1)
            deltas.total(TOTALS, SCORE_SUM, c.score)
        ranking = deltas.zsets.setdefault(AT_RISK_SET, {})
        if c.band == AT_RISK:
            ranking[c.user] = c.score
        elif band == AT_RISK:
            ranking[c.user] = None
