"""Customer scores as engine keyed state: the I/O-free shell around the pure score modules.

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

Its own module because it is the one place that knows both the engine's keyed-state protocol and
the score: what an event contributes (:mod:`stream.metrics.score.evaluation`), which customers
can be merged without a read (:mod:`stream.metrics.score.pending`), how a value is stored
(:mod:`stream.metrics.score.codec`) and what a score change writes. The names below are stored
Redis key and field parts: changing one orphans the data already written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from stream.contract.decode import Event
from stream.contract.types import EventType
from stream.engine.deltas import Deltas, pair_digest
from stream.engine.fold import Handler
from stream.engine.keyed import KeyedUpdates
from stream.metrics.score.codec import pack, summary_core, unpack
from stream.metrics.score.evaluation import (
    ActivityHit,
    Customer,
    Transition,
    activity_index,
    advance,
)
from stream.metrics.score.pending import absorb_pending
from stream.metrics.score.rules import AT_RISK, HOME_FAMILY, ScoreRules, band_of, bucket_label
from stream.metrics.score.summary_core import channel_label
from stream.metrics.score.touch import ScoreTouch

__all__ = [
    "AT_RISK_SET",
    "OUTBOX",
    "SCORE_SUM",
    "STATE",
    "TOTALS",
    "ScoreState",
    "totals_fields",
    "transition_message",
]


#: The keyed state's name: its hash, due set and pending records are stored under it.
STATE = "cus"
TOTALS = "cus"
AT_RISK_SET = "atrisk"
OUTBOX = "churn"
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


class ScoreState:
    """Per-customer score state, hosted on the home family's partitions.

    Its handlers collect the same items on every partition; on the relaying families' partitions
    the engine turns them into relay messages to the home topic (stream/engine/relay.py), and on
    the home partitions relayed records reach these handlers only.

    Most touches only add activity between two evaluations (scores change only at bucket
    boundaries): those customers are not read; their batch activity is merged into a pending
    record after their value in Redis by the apply
    (:func:`stream.metrics.score.pending.merge_pending`, op A) and their due time moved earlier
    if needed. A customer is read -- state and pending record -- and evaluated when it falls
    due, or when the batch brings a health event (order-dependent inputs) or an event in a
    bucket whose end the watermark has already passed.
    """

    name = STATE
    pending = True  # pending records follow the values (stream.engine.keyed.keeps_pending)
    families = frozenset({HOME_FAMILY})

    def __init__(
        self, rules: ScoreRules, channels: frozenset[str], due_limit: int = 20_000
    ) -> None:
        self.rules = rules
        self.due_limit = due_limit
        self.channels = channels
        self._fields: dict[str, str] = {}  # user -> field (memoised digests, bounded)
        self._index = activity_index(rules)
        counted = set(self._index) | _HEALTH_EVENTS
        self._types = sorted(counted)
        #: events that only add activity (mergeable without reading the state)
        self._additive = frozenset(self._index) - _HEALTH_EVENTS

    def handlers(self) -> dict[str, Handler]:
        return {t: self.hit for t in self._types}

    def hit(self, event: Event, minute: int, deltas: Deltas) -> None:
        # Hot path: the item is a touch, not the event (stream.metrics.score.touch says why);
        # settle reads it once per customer.
        props = event.props
        touch = ScoreTouch(
            event.event_id,
            event.type,
            event.ts_ms,
            event.user_id,
            props.channel,
            props.ticket_id,
            props.score,
            props.author,
            props.public,
        )
        per_key = deltas.keyed.get(STATE)
        if per_key is None:
            per_key = deltas.keyed[STATE] = {}
        items = per_key.get(event.user_id)
        if items is None:
            per_key[event.user_id] = [touch]
        else:
            items.append(touch)

    def field_of(self, key: str) -> str:
        digest = self._fields.get(key)
        if digest is None:
            if len(self._fields) >= 200_000:
                self._fields.clear()
            digest = self._fields[key] = pair_digest("customer", key)
        return digest

    def _hit(self, touch: ScoreTouch) -> ActivityHit:
        return ActivityHit(
            touch.ts_ms,
            touch.type,
            channel_label(touch.channel, self.channels),
            touch.ticket_id or "",
            -1 if touch.score is None else touch.score,
            touch.author or "",
            touch.public is not False,
        )

    def plan(self, items: Mapping[str, list[ScoreTouch]], watermark: int) -> list[str]:
        """The touched customers whose state must be read this batch (see the class doc)."""
        edge = watermark // self.rules.bucket_ms * self.rules.bucket_ms
        additive = self._additive
        return summary_core.to_read(items, edge, additive)

    def _summary(self, touches: list[ScoreTouch]) -> tuple[list[Any], int]:
        """One customer's batch activity as a pending record, and its earliest bucket."""
        rules = self.rules
        return summary_core.summary(
            touches, self._index, rules.bucket_ms, len(rules.activities), self.channels
        )

    def settle(
        self,
        stored: Mapping[str, Any],
        items: Mapping[str, list[Any]],
        watermark: int,
        deltas: Deltas,
    ) -> KeyedUpdates:
        """``stored``: field -> (packed state or None, pending record or None) for the fields
        read (``plan`` + due)."""
        rules = self.rules
        n = len(rules.activities)
        additive = self._additive
        updates: KeyedUpdates = []
        # The customers not read only add activity: merged in Redis, due moved earlier.
        entries, merged = summary_core.pending_entries(
            items, stored, self._index, rules.bucket_ms, n, self.channels
        )
        for name, (raw, pending) in stored.items():
            touches: list[ScoreTouch] = items.get(name, [])
            c = unpack(raw, n) if raw is not None else None
            before = (None, -1, "") if c is None else (c.band, c.score, c.channel)
            if pending is not None:
                rec = pending
                if c is None:
                    c = Customer(rec[0])
                absorb_pending(c, rec, rules)  # the new value (op K) drops the record
            hits: list[ActivityHit] = []
            if touches:
                if c is None:
                    c = Customer(touches[0].user_id)
                if all(e.type in additive for e in touches):
                    absorb_pending(c, self._summary(touches)[0], rules)
                else:
                    hits = sorted(self._hit(e) for e in touches)
            if c is None:
                continue
            transitions, due = advance(c, hits, watermark, rules)
            self._account(c, before, deltas)
            for t in transitions:
                msg = transition_message(c.user, t, rules, c.health, c.channel)
                deltas.outbox.setdefault(OUTBOX, []).append(msg)
            updates += (name, pack(c), -1 if due is None else due)
        if merged:
            deltas.pending[STATE] = [merged, entries]
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
