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
lost since t (:mod:`stream.metrics.levels`).

Churn and retention count only the customers present at a window's start S (both 0–100):
churn = those of them lost in the window / S, retention = those of them still subscribed at its
end / S. Which customers those are depends on the window, so each settled transition counts, per
granularity (calendar periods included: their fields are counted in the day of the transition,
so a period's sum over its days counts each customer once), whether its customer was present at
the start of its window there (the state keeps the customer's last quarter of transitions to
tell): ``acc.churned.<g>``, ``acc.gone.<g>`` and
``acc.returned.<g>`` (:func:`starting_changes`). The textbook (E − N) / S, which goes negative
when new customers leave within the window, stays as ``retention_rate_classic``.

Customer value: purchasing customers are a users set (``acc.buyers``); the state also keeps a
customer's purchase times of the last quarter, so that a purchase sharing a day, week, month or
quarter with another one adds the customer to that period's repeat-buyer set
(:func:`repeat_windows`). ARPU and predicted CLV combine revenue, active users and churn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from stream.contract.decode import Event
from stream.contract.types import EventType, Family
from stream.engine.deltas import Deltas, pair_digest
from stream.engine.fold import Handler
from stream.engine.keyed import NEVER_DUE, KeyedUpdates
from stream.engine.windows import GRANULARITY_CODE, LONGEST_SECONDS, QUERY_GRANULARITIES, Windows
from stream.metrics.compute import (
    active_users,
    counter_spec,
    counters,
    level_windows,
    sums_spec,
)
from stream.metrics.reader import Reader
from stream.metrics.spec import Gauge, MetricSpec, Query, Sums, Value, ratio

__all__ = ["SPECS", "AccountsFold", "SubscriptionState", "customer_key"]

#: Running total of subscribed customers (field ``all``): the level the windows count back from.
SUBSCRIBED = "customers"
#: Running total per customer (field: digest of the user id) of what they paid.
LTV = "ltv"
STARTED, RENEWED, UPGRADED = "acc.started", "acc.renewed", "acc.upgraded"
CANCELLED, PURCHASES = "acc.cancelled", "acc.purchases"
#: Minor units (amount × 100) of purchases and started/renewed/upgraded subscriptions.
REVENUE = "acc.revenue"
#: Minor units of purchases alone (the average order value's numerator).
PURCHASE_REVENUE = "acc.purchase_revenue"
#: Settled status changes: customers who became subscribed / stopped being subscribed.
NEW_CUSTOMERS, LOST_CUSTOMERS = "acc.new", "acc.lost"
#: Per granularity code (``acc.churned.h``…), of the customers present at a window's start:
#: those lost in it (once each), their losses and their returns (losses − returns: 1 per such
#: customer absent at the window's end).
CHURNED, GONE, RETURNED = "acc.churned.", "acc.gone.", "acc.returned."
#: Users sets: customers with a purchase in the window (``acc.buyers``), and per period code
#: those with two or more in that period (``acc.repeat.d``, ``.w``, ``.mo``, ``.q``).
BUYERS, REPEAT_BUYERS = "acc.buyers", "acc.repeat."
#: Event type -> counter field of the events themselves.
EVENT_FIELDS: dict[str, str] = {
    EventType.SUBSCRIPTION_STARTED.value: STARTED,
    EventType.SUBSCRIPTION_RENEWED.value: RENEWED,
    EventType.SUBSCRIPTION_UPGRADED.value: UPGRADED,
    EventType.SUBSCRIPTION_CANCELLED.value: CANCELLED,
    EventType.PURCHASE.value: PURCHASES,
}
PURCHASE = EventType.PURCHASE.value
_REVENUE_TYPES = frozenset(
    {
        EventType.PURCHASE.value,
        EventType.SUBSCRIPTION_STARTED.value,
        EventType.SUBSCRIPTION_RENEWED.value,
        EventType.SUBSCRIPTION_UPGRADED.value,
    }
)
START, CANCEL = 0, 1  # same-millisecond start and cancel: the start first (a real, short stint)
BOUGHT = 2  # a purchase: not a status change, applied at once (repeat buyers are a union)
#: Periods whose repeat buyers are kept (``acc.repeat.<code>`` users sets, in day windows).
REPEAT_GRANULARITIES = ("day", "week", "month", "quarter")


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
                deltas.count(minute, REVENUE, cents)
                if event.type == PURCHASE:
                    deltas.count(minute, PURCHASE_REVENUE, cents)
                deltas.total(LTV, customer_key(event.user_id), cents)
        if event.type == PURCHASE:
            deltas.add_user(minute, BUYERS, event.user_id)


# ---- per-customer subscription status ----------------------------------------------------

Pending = tuple[int, int]  # (ts ms, START | CANCEL)


def settle_subscription(
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


def history_ms(granularities: Iterable[str]) -> int:
    """Event time a customer's settled transitions are kept for: the longest window (a
    quarter, plus the hour a DST change can add), so that a transition can tell the customer's
    status at the start of each of its windows (churn and retention count only the customers
    present then)."""
    return max(LONGEST_SECONDS[g] for g in granularities) * 1000


def status_at(active: bool, history: list[int], t: int) -> bool:
    """The status just before ``t``, given the status now and the (ascending) times of the
    transitions since at least ``t``: each one toggled it, since a start only gains an inactive
    customer and a cancel only loses an active one."""
    flips = sum(1 for h in history if h >= t)
    return active != (flips % 2 == 1)


def starting_changes(
    active: bool, history: list[int], ts: int, kind: int, window_starts: Iterable[tuple[str, int]]
) -> list[str]:
    """Counter fields a settled transition at ``ts`` moves (``active``/``history``: before it).

    Per window (granularity code, start) of the transition, for a customer present at the
    window's start: ``churned`` counts the first time they are lost in it (their first
    transition in it), ``gone`` each loss and ``returned`` each return, so ``gone − returned``
    is 1 exactly when they are not subscribed at the window's end.
    """
    fields = []
    for code, start in window_starts:
        if not status_at(active, history, start):
            continue  # not a customer at the window's start: new, and never in its churn
        first_in_window = not any(h >= start for h in history)
        if kind == CANCEL:
            if first_in_window:
                fields.append(CHURNED + code)
            fields.append(GONE + code)
        else:
            fields.append(RETURNED + code)
    return fields


def repeat_windows(
    purchases: Iterable[int], ts: int, periods: Iterable[tuple[str, int, int]]
) -> list[str]:
    """Users-set names (``acc.repeat.<g>``) a purchase at ``ts`` adds its customer to: those
    of the periods (code, start ms, end ms) holding it that also hold another of the customer's
    ``purchases``. Sets are unions, so whichever of two purchases comes second in arrival
    order adds the customer, in a day of the period they share."""
    known = list(purchases)
    return [
        REPEAT_BUYERS + code for code, start, end in periods if any(start <= p < end for p in known)
    ]


def pack(
    active: bool,
    pending: list[Pending],
    history: list[int] | None = None,
    purchases: list[int] | None = None,
) -> str:
    head = str(int(active))
    if history:
        head += "@" + ",".join(map(str, history))
    if purchases:
        head += "$" + ",".join(map(str, purchases))
    return ";".join([head, *(f"{ts},{kind}" for ts, kind in pending)])


def unpack(value: bytes | str | None) -> tuple[bool, list[Pending], list[int], list[int]]:
    """(active, pending, transition history, purchase times). A value written before the
    history was kept reads as an empty history: a customer then counts as present since before
    any window; one written before purchases were kept reads as no earlier purchase."""
    if not value:
        return False, [], [], []
    text = value.decode() if isinstance(value, bytes) else value
    head, *rest = text.split(";")
    head, _, bought = head.partition("$")
    status, _, times = head.partition("@")
    pending = []
    for part in rest:
        ts, kind = part.split(",")
        pending.append((int(ts), int(kind)))
    history = [int(t) for t in times.split(",")] if times else []
    return status == "1", pending, history, [int(t) for t in bought.split(",")] if bought else []


_KIND = {
    EventType.SUBSCRIPTION_STARTED.value: START,
    EventType.SUBSCRIPTION_CANCELLED.value: CANCEL,
    EventType.PURCHASE.value: BOUGHT,
}


class SubscriptionState:
    """Keyed state: one hash field per customer (digest of the user id) with status, pending
    subscription events, the last quarter's transitions and purchase times (repeat buyers)."""

    name = "cust"
    families = frozenset({Family.ACCOUNT.value})
    pending = False  # no pending records after the values (stream.engine.keyed)

    def __init__(
        self,
        due_limit: int = 20_000,
        windows: Windows | None = None,
        granularities: Iterable[str] = QUERY_GRANULARITIES,
    ) -> None:
        self.due_limit = due_limit
        self.windows = windows or Windows(ZoneInfo("UTC"))
        self.granularities = tuple(granularities)
        self.history_ms = history_ms(self.granularities)

    def window_starts(self, ts_ms: int) -> list[tuple[str, int]]:
        """(granularity code, start in epoch ms) of each window holding ``ts_ms``."""
        start_of = self.windows.start_of
        return [(GRANULARITY_CODE[g], start_of(g, ts_ms / 1000) * 1000) for g in self.granularities]

    def repeat_periods(self, ts_ms: int) -> list[tuple[str, int, int]]:
        """(code, start ms, end ms) of each repeat-buyer period holding ``ts_ms``."""
        out = []
        for g in REPEAT_GRANULARITIES:
            start = self.windows.start_of(g, ts_ms / 1000)
            out.append((GRANULARITY_CODE[g], start * 1000, self.windows.end_of(g, start) * 1000))
        return out

    def plan(self, items: Mapping[str, object], watermark: int) -> list[str]:
        """Every touched customer is read (:meth:`stream.engine.keyed.KeyedState.plan`)."""
        return list(items)

    def handlers(self) -> dict[str, Handler]:
        return {t: self.subscription for t in _KIND}

    def subscription(self, event: Event, minute: int, deltas: Deltas) -> None:
        kind = _KIND[event.type]
        # A purchase carries its user id: the repeat-buyer sets hold ids, as every users set
        # does, while the state is stored under the id's digest.
        item = (event.ts_ms, kind, event.user_id) if kind == BOUGHT else (event.ts_ms, kind)
        deltas.keyed_item(self.name, event.user_id, item)

    def field_of(self, key: str) -> str:
        return customer_key(key)

    def settle(
        self,
        stored: Mapping[str, str | bytes | None],
        items: Mapping[str, list[Any]],
        watermark: int,
        deltas: Deltas,
    ) -> KeyedUpdates:
        updates: KeyedUpdates = []
        for name in stored.keys() | items.keys():
            before = stored.get(name)
            was_active, pending, history, purchases = unpack(before)
            arrived = items.get(name, ())
            for ts, _, user in sorted(i for i in arrived if i[1] == BOUGHT):
                minute = ts // 60_000 * 60
                for set_name in repeat_windows(purchases, ts, self.repeat_periods(ts)):
                    deltas.add_user(minute, set_name, user)
                purchases.append(ts)
            # A later purchase can share a period only with those of the last quarter.
            purchases = sorted(p for p in purchases if p >= watermark - self.history_ms)
            active, transitions, rest = settle_subscription(
                was_active, [*pending, *(i for i in arrived if i[1] != BOUGHT)], watermark
            )
            for ts, kind in transitions:
                minute = ts // 60_000 * 60
                deltas.count(minute, NEW_CUSTOMERS if kind == START else LOST_CUSTOMERS)
                deltas.total(SUBSCRIBED, "all", 1 if kind == START else -1)
                for f in starting_changes(was_active, history, ts, kind, self.window_starts(ts)):
                    deltas.count(minute, f)
                was_active = kind == START
                history.append(ts)
            # Later transitions are at or after the watermark: their windows start after this.
            history = [h for h in history if h >= watermark - self.history_ms]
            last = max([*history[-1:], *purchases[-1:]], default=None)
            if rest:
                due = min(ts for ts, _ in rest) + 1
            elif active:
                due = NEVER_DUE
            elif last is not None:
                due = last + self.history_ms + 1  # then forgotten: inactive and idle
            else:
                if before is not None:
                    updates += (name, "", -1)  # inactive and idle: the same as no state
                continue
            updates += (name, pack(active, rest, history, purchases), due)
        return updates


# ---- read side ---------------------------------------------------------------------------

ACCOUNT = (Family.ACCOUNT.value,)


async def _churn(q: Query, r: Reader) -> list[Value]:
    code = GRANULARITY_CODE[q.granularity]
    return [
        ratio(w.get(CHURNED + code, 0), start, 100)
        for (start, _, _), w in await _customer_windows_with_fields(q, r)
    ]


async def _retention(q: Query, r: Reader) -> list[Value]:
    code = GRANULARITY_CODE[q.granularity]
    return [
        ratio(start - w.get(GONE + code, 0) + w.get(RETURNED + code, 0), start, 100)
        for (start, _, _), w in await _customer_windows_with_fields(q, r)
    ]


async def _retention_classic(q: Query, r: Reader) -> list[Value]:
    return [
        ratio(start + new - lost - new, start, 100)
        for start, new, lost in await _customer_windows(q, r)
    ]


async def _customer_windows(q: Query, r: Reader) -> list[tuple[float, float, float]]:
    """(customers at start, new, lost) per window."""
    return [levels for levels, _ in await _customer_windows_with_fields(q, r)]


async def _customer_windows_with_fields(
    q: Query, r: Reader
) -> list[tuple[tuple[float, float, float], dict[str, int]]]:
    """((customers at start, new, lost), the window's account counters) per window."""
    windows = await counters(q, r, ACCOUNT)
    starts = await level_windows(
        q,
        r,
        ACCOUNT,
        SUBSCRIBED,
        lambda t: float(t.get("all", 0)),
        lambda w: float(w.get(NEW_CUSTOMERS, 0) - w.get(LOST_CUSTOMERS, 0)),
    )
    return [
        ((level, float(w.get(NEW_CUSTOMERS, 0)), float(w.get(LOST_CUSTOMERS, 0))), w)
        for (level, _), w in zip(starts, windows, strict=True)
    ]


async def _customers_end(q: Query, r: Reader) -> list[Value]:
    return [start + new - lost for start, new, lost in await _customer_windows(q, r)]


def _subscription_events(field: str, name: str, event: str) -> MetricSpec:
    return counter_spec(
        name,
        f"{name.replace('_', ' ').capitalize()} (customers: settled on the watermark).",
        field,
        ACCOUNT,
        gauge=Gauge(
            "engagement_subscription_events",
            "Subscription events.",
            "settled",
            labels=(("event", event),),
        ),
    )


def _counted(
    field: str, name: str, gauge: Gauge | None = None, settled: bool = False
) -> MetricSpec:
    return counter_spec(
        name,
        f"{name.replace('_', ' ').capitalize()} (customers: settled on the watermark).",
        field,
        ACCOUNT,
        gauge=gauge,
        settled=settled,
    )


async def _distinct(q: Query, r: Reader, set_name: str) -> list[float]:
    shards = await r.shards(ACCOUNT)
    counts = await r.distinct(shards, q.granularity, [[s] for s in q.starts], [set_name])
    return [float(c) for c in counts]


async def _purchase_frequency(q: Query, r: Reader) -> list[Value]:
    buyers = await _distinct(q, r, BUYERS)
    windows = await counters(q, r, ACCOUNT)
    return [ratio(w.get(PURCHASES, 0), b) for w, b in zip(windows, buyers, strict=True)]


async def _repeat_purchase_rate(q: Query, r: Reader) -> list[Value]:
    buyers = await _distinct(q, r, BUYERS)
    repeat = await _distinct(q, r, REPEAT_BUYERS + GRANULARITY_CODE[q.granularity])
    return [ratio(n, b, 100) for n, b in zip(repeat, buyers, strict=True)]


async def _arpu(q: Query, r: Reader) -> list[Value]:
    active = await active_users(q, r, None)
    windows = await counters(q, r, ACCOUNT)
    return [ratio(w.get(REVENUE, 0), a, 0.01) for w, a in zip(windows, active, strict=True)]


async def _predicted_clv(q: Query, r: Reader) -> list[Value]:
    arpu = await _arpu(q, r)
    churn = await _churn(q, r)
    return [
        None if a is None or not c else a * q.options.gross_margin / (c / 100)
        for a, c in zip(arpu, churn, strict=True)
    ]


def _from_minor_units(cents: float) -> Value:
    return cents / 100


def _average_order(cents: float, purchases: float) -> Value:
    return ratio(cents, purchases, 0.01)


SPECS = [
    *(
        _subscription_events(field, f"subscriptions_{event}", event)
        for field, event in (
            (STARTED, "started"),
            (RENEWED, "renewed"),
            (UPGRADED, "upgraded"),
            (CANCELLED, "cancelled"),
        )
    ),
    _counted(PURCHASES, "purchases", Gauge("engagement_purchases", "Purchases.", "settled")),
    _counted(NEW_CUSTOMERS, "new_customers", settled=True),
    _counted(LOST_CUSTOMERS, "lost_customers", settled=True),
    sums_spec(
        "revenue",
        "Sum of amount over purchases and started/renewed/upgraded subscriptions.",
        "currency",
        Sums((REVENUE,), _from_minor_units),
        ACCOUNT,
        gauge=Gauge(
            "engagement_revenue", "Purchases and subscription payments (amount).", "settled"
        ),
    ),
    sums_spec(
        "avg_order_value",
        "Purchase revenue / purchases (null without purchases).",
        "currency",
        Sums((PURCHASE_REVENUE, PURCHASES), _average_order),
        ACCOUNT,
        gauge=Gauge("engagement_avg_order_value", "Purchase revenue / purchases.", "settled"),
    ),
    MetricSpec(
        "purchase_frequency",
        "Purchases / purchasing customers (distinct users with a purchase in the window).",
        "ratio",
        _purchase_frequency,
        families=ACCOUNT,
        gauge=Gauge(
            "engagement_purchase_frequency",
            "Purchases per purchasing customer, current month.",
            "month",
        ),
    ),
    MetricSpec(
        "repeat_purchase_rate",
        "Customers with two or more purchases in the period / purchasing customers × 100.",
        "percent",
        _repeat_purchase_rate,
        granularities=REPEAT_GRANULARITIES,
        families=ACCOUNT,
        gauge=Gauge(
            "engagement_repeat_purchase_ratio",
            "Customers with 2+ purchases / purchasing customers, current month.",
            "month",
            0.01,
        ),
    ),
    MetricSpec(
        "arpu",
        "Average revenue per active user: revenue / active users of the window (GA4's ARPU).",
        "currency",
        _arpu,
        families=None,
        gauge=Gauge("engagement_arpu", "Revenue / active users, current month.", "month"),
    ),
    MetricSpec(
        "predicted_clv",
        "Predicted customer lifetime value: ARPU × gross_margin / (churn_rate / 100), over "
        "the month's or quarter's own ARPU and churn (null without churn).",
        "currency",
        _predicted_clv,
        granularities=("month", "quarter"),
        families=None,
        settled=True,
        gauge=Gauge(
            "engagement_predicted_clv",
            "ARPU × gross margin / churn rate, current month.",
            "month",
        ),
    ),
    MetricSpec(
        "customers",
        "Subscribed customers at the window's end.",
        "count",
        _customers_end,
        families=ACCOUNT,
        settled=True,
        gauge=Gauge("engagement_customers", "Subscribed customers at window end.", "settled"),
    ),
    MetricSpec(
        "churn_rate",
        "Customers present at the window's start and lost in it / customers at its start × 100.",
        "percent",
        _churn,
        families=ACCOUNT,
        settled=True,
        gauge=Gauge(
            "engagement_churn_ratio",
            "Customers at start lost in the window / at start.",
            "settled",
            0.01,
        ),
    ),
    MetricSpec(
        "retention_rate",
        "Customers present at the window's start and still subscribed at its end / customers "
        "at its start × 100.",
        "percent",
        _retention,
        families=ACCOUNT,
        settled=True,
        gauge=Gauge(
            "engagement_retention_ratio",
            "Customers at start still subscribed at end / at start.",
            "settled",
            0.01,
        ),
    ),
    MetricSpec(
        "retention_rate_classic",
        "(Customers at end − new customers) / customers at start × 100: the textbook formula, "
        "below 0 when new customers leave within the window.",
        "percent",
        _retention_classic,
        families=ACCOUNT,
        settled=True,
    ),
]
