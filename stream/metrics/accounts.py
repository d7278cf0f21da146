"""Account metrics: subscription events, purchases, revenue, lifetime value, churn and retention.

Fold side (pure), per window: ``acc.started``, ``acc.renewed``, ``acc.upgraded``,
``acc.cancelled`` (events), ``acc.purchases``, ``acc.revenue`` (minor units: ``amount`` × 100,
rounded, over purchases and started/renewed/upgraded subscriptions; amounts are summed as sent,
one currency per deployment). Per customer (= ``user_id``, the partition key, so one customer's
events stay in one partition) the running total ``ltv`` (field: 64-bit digest of the user id,
never the id in clear) is the lifetime value the API reads; it is never a Prometheus label.

Customers, churn and retention need per-customer state, because a cancellation only loses a
customer who was subscribed *at that moment in event time*, and events arrive out of order.
:class:`SubscriptionState` keeps each customer's status plus the events it cannot judge yet, and
settles an event only once the partition watermark has passed it (no earlier event of that
customer can still arrive, so the order is final). A settled ``subscription_started`` of an
inactive customer is a *new* customer (``acc.new``, running total ``customers`` + 1); a settled
``subscription_cancelled`` of an active one is a *lost* customer (``acc.lost``, − 1). Renewals
and upgrades do not change the status. Customers at time t = the running total − the new and
lost since t (:mod:`stream.metrics.levels`); churn = lost / customers at start × 100, retention
= (customers at end − new) / customers at start × 100.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stream.contract.decode import Event
from stream.contract.types import EventType, Family
from stream.engine.deltas import Deltas, pair_digest

Handler = Callable[[Event, int, Deltas], None]

CUSTOMERS = "customers"
LTV = "ltv"
#: Event type -> counter field of the events themselves.
EVENT_FIELDS: dict[str, str] = {
    EventType.SUBSCRIPTION_STARTED.value: "acc.started",
    EventType.SUBSCRIPTION_RENEWED.value: "acc.renewed",
    EventType.SUBSCRIPTION_UPGRADED.value: "acc.upgraded",
    EventType.SUBSCRIPTION_CANCELLED.value: "acc.cancelled",
    EventType.PURCHASE.value: "acc.purchases",
}
_REVENUE_TYPES = frozenset(
    {
        EventType.PURCHASE.value,
        EventType.SUBSCRIPTION_STARTED.value,
        EventType.SUBSCRIPTION_RENEWED.value,
        EventType.SUBSCRIPTION_UPGRADED.value,
    }
)
#: Due time of an entity with nothing to settle: only a new event of its own wakes it.
NEVER = 2**53 - 1
START, CANCEL = 0, 1  # same-millisecond start and cancel: the start first (a real, short stint)


def minor_units(amount: float | None) -> int:
    return 0 if amount is None else round(amount * 100)


def customer_key(user_id: str) -> str:
    return pair_digest(user_id)


class AccountsFold:
    def handlers(self) -> dict[str, Handler]:
        return {t: self.account_event for t in EVENT_FIELDS}

    def account_event(self, event: Event, minute: int, deltas: Deltas) -> None:
        deltas.count(minute, EVENT_FIELDS[event.type])
        if event.type in _REVENUE_TYPES:
            cents = minor_units(event.props.amount)
            if cents:
                deltas.count(minute, "acc.revenue", cents)
                deltas.total(LTV, customer_key(event.user_id), cents)


# ---- per-customer subscription status ----------------------------------------------------

Pending = tuple[int, int]  # (ts ms, START | CANCEL)


def advance(
    active: bool, pending: Iterable[Pending], watermark: int
) -> tuple[bool, list[Pending], list[Pending]]:
    """Settle the events before the watermark in event-time order.

    Returns (status after them, transitions (ts, START = new | CANCEL = lost), still pending).
    """
    transitions: list[Pending] = []
    rest: list[Pending] = []
    for ts, kind in sorted(pending):
        if ts >= watermark:  # an event stamped at the watermark itself can still arrive
            rest.append((ts, kind))
        elif kind == START and not active:
            active = True
            transitions.append((ts, START))
        elif kind == CANCEL and active:
            active = False
            transitions.append((ts, CANCEL))
    return active, transitions, rest


def pack(active: bool, pending: list[Pending]) -> str:
    return ";".join([str(int(active)), *(f"{ts},{kind}" for ts, kind in pending)])


def unpack(value: bytes | str | None) -> tuple[bool, list[Pending]]:
    if not value:
        return False, []
    text = value.decode() if isinstance(value, bytes) else value
    head, *rest = text.split(";")
    pending = []
    for part in rest:
        ts, kind = part.split(",")
        pending.append((int(ts), int(kind)))
    return head == "1", pending


_KIND = {
    EventType.SUBSCRIPTION_STARTED.value: START,
    EventType.SUBSCRIPTION_CANCELLED.value: CANCEL,
}


class SubscriptionState:
    """Keyed state: one hash field per customer (digest of the user id) with status + pending."""

    name = "cust"
    families = frozenset({Family.ACCOUNT.value})

    def __init__(self, due_limit: int = 20_000) -> None:
        self.due_limit = due_limit

    def handlers(self) -> dict[str, Handler]:
        return {t: self.subscription for t in _KIND}

    def subscription(self, event: Event, minute: int, deltas: Deltas) -> None:
        deltas.keyed_item(self.name, event.user_id, (event.ts_ms, _KIND[event.type]))

    def field_of(self, key: str) -> str:
        return customer_key(key)

    def settle(
        self,
        stored: Mapping[str, bytes | None],
        items: Mapping[str, list[Any]],
        watermark: int,
        deltas: Deltas,
    ) -> dict[str, tuple[str | None, int | None]]:
        updates: dict[str, tuple[str | None, int | None]] = {}
        for name in stored.keys() | items.keys():
            before = stored.get(name)
            active, pending = unpack(before)
            active, transitions, rest = advance(active, [*pending, *items.get(name, ())], watermark)
            for ts, kind in transitions:
                minute = ts // 60_000 * 60
                deltas.count(minute, "acc.new" if kind == START else "acc.lost")
                deltas.total(CUSTOMERS, "all", 1 if kind == START else -1)
            if rest:
                updates[name] = (pack(active, rest), min(ts for ts, _ in rest) + 1)
            elif active:
                updates[name] = (pack(active, []), NEVER)
            elif before is not None:
                updates[name] = (None, None)  # inactive and idle: the same as no state
        return updates
