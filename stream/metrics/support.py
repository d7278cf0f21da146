"""Support tickets (Zendesk semantics) as keyed state: lifecycle facts settled on the watermark.

Definitions (metric-definitions.md):

* first reply time: ``ticket_created`` → the first *public agent* reply (``author`` ``agent``,
  ``public`` not false); bot and requester replies never count. A ticket created by an agent
  (``properties.author = "agent"`` on ``ticket_created``) uses the second public agent reply,
  because helpdesks export the agent's opening comment as a public agent reply too.
* first resolution time: created → the first solve; full resolution time: created → the latest
  solve (a reopened and re-solved ticket moves full, keeps first).
* Reopens count when they happen, as Zendesk counts them: a ``ticket_reopened`` of a solved
  ticket, or a solve of a ticket already solved (helpdesks that reopen on a requester's reply
  send no reopen event: the second solve is an implicit reopen, and moves full resolution).
  ``ticket_closed`` is final. Calendar hours; with a business-hours schedule
  (:mod:`stream.metrics.business_hours`) each time is also recorded in business hours, as its
  own measure (``frt_bh``, ``fres_bh``, ``full_bh``) with its own count, so a window that was
  partly settled before the mode was switched on still has an exact business mean.
* Facts land in the window of the event that completes them: the reply, the solve. When a
  re-solve moves full resolution time, the earlier value is taken back out of its window —
  exactly the value that was recorded (``Ticket.full_solve``, and ``Ticket.full_business`` for
  business hours), never one recomputed from the latest solve or the current schedule.
* Times are measured from the ``ticket_created`` and only to events after it in event time
  (same-millisecond events apply in the order created, replied, solved, reopened, closed; of
  duplicate creations in one millisecond, the one with the lowest escaped (channel, priority)
  labels counts — the order never depends on arrival).
  Before its creation a ticket is like one whose creation the stream never saw: a solve stamped
  earlier than the creation counts as a solve (and a second one as a reopen) under
  ``(not set)`` labels, but has no resolution time. Such a ticket has no first resolution time
  (its first solve precedes its creation); its full resolution time runs from the creation to
  its latest solve after the creation, if any. A creation does not reopen a ticket solved or
  closed before it.
* Backlog = tickets open now (created or reopened, not solved or closed), by channel and
  priority of their ``ticket_created``.

Why it is exact under any arrival order within the allowed lateness: each ticket's events wait
in its state until the partition watermark (max event time − allowed lateness) passes them;
then they are applied in event-time order. Any event stamped earlier than the watermark would be
late (dead-lettered), so the settled order is final and the facts equal a batch computation
over the sorted lifecycle. The backlog cannot wait a day, so it is provisional: each time a
ticket changes, its open/closed status is recomputed from everything known (settled + pending)
and the running total ``backlog`` moves by the difference — it converges to the batch answer
once all events arrived.

All events of a ticket must carry the same ``user_id`` (the requester): it is the Kafka key, so
the ticket's events meet in one partition. Reply or solve events of a ticket whose creation the
stream never saw (before it started) count as solves/reopens under ``(not set)`` labels but give
no times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from stream.contract.decode import Event
from stream.contract.types import EventType, Family
from stream.engine.deltas import Deltas, pair_digest
from stream.engine.fold import Handler
from stream.engine.keyed import NEVER_DUE, KeyedUpdates
from stream.engine.keys import FIELD_SEP, escape, field
from stream.metrics.buckets import bucket_counts, bucket_field
from stream.metrics.business_hours import BusinessHours
from stream.metrics.compute import counters, hash_median, one_dim_slice
from stream.metrics.export import ExportContext, histogram_buckets, labelled
from stream.metrics.labels import NOT_SET, BoundedLabels
from stream.metrics.reader import Reader
from stream.metrics.spec import Compute, Gauge, MetricSpec, Query, Value, ratio

__all__ = ["DIMENSIONS", "SPECS", "TicketState", "export"]

#: Business milliseconds of ``[start, end)`` (``BusinessHours.business_ms``).
BusinessClock = Callable[[int, int], int]

DIMENSIONS = ("channel", "priority")
#: Hash (one per window) of duration counts per bucket (:mod:`stream.metrics.buckets`):
#: ``<measure>|all|b<i>`` and ``<measure>|<dim>|<value>|b<i>`` (before the buckets the whole
#: second ``<s>`` ended the field; such fields are read into their bucket).
DURATION_HASH = "tixdur"
#: Running total of open tickets: ``all``, ``channel|<c>``, ``priority|<p>``.
BACKLOG = "backlog"
#: Counter-field stem of ticket facts: ``tix.<count>[|<dim>|<value>]`` for the counted facts
#: (``new``, ``solved``, ``reopens``), ``tix.<duration>.n`` / ``.ms`` for the durations.
STEM = "tix."
#: Duration facts (``tix.<measure>.n`` and ``tix.<measure>.ms``, plus the duration hash).
DURATIONS = ("frt", "fres", "full")
#: The business-hours measure of each duration (recorded only with a schedule configured).
BUSINESS = {m: m + "_bh" for m in DURATIONS}

CREATED, REPLY, SOLVED, REOPENED, CLOSED = range(5)
UNKNOWN, OPEN, IS_SOLVED, IS_CLOSED = range(4)
_KINDS = {
    EventType.TICKET_CREATED.value: CREATED,
    EventType.TICKET_REPLIED.value: REPLY,
    EventType.TICKET_SOLVED.value: SOLVED,
    EventType.TICKET_REOPENED.value: REOPENED,
    EventType.TICKET_CLOSED.value: CLOSED,
}
_NOT_SET = escape(NOT_SET)


class TicketEvent(msgspec.Struct, array_like=True, frozen=True, order=True):
    """One lifecycle event as the ticket state needs it; sorts by (ts, kind)."""

    ts: int
    kind: int
    channel: str = ""  # escaped bounded label (created only)
    priority: str = ""
    flag: bool = False  # created: by an agent; reply: a public agent reply


class Ticket(msgspec.Struct, array_like=True):
    """Settled summary of one ticket, its unsettled events, and its backlog contribution."""

    created: int | None = None
    channel: str = _NOT_SET  # escaped labels of the settled ticket_created
    priority: str = _NOT_SET
    by_agent: bool = False
    agent_replies: int = 0
    replied: bool = False
    solves: int = 0
    # The solve whose full resolution time is in the counters: set only when a solve records one
    # (the ticket was created by then), so a re-solve takes back exactly what was added.
    full_solve: int | None = None
    status: int = UNKNOWN
    last_ts: int = 0
    pending: list[TicketEvent] = []
    backlog: str = ""  # "<channel>|<priority>" it counts under in the backlog; "" none
    # Business ms of the full resolution time in the counters (None: none recorded, e.g. the
    # mode was off then). Last, so that states stored before it existed still decode.
    full_business: int | None = None

    def labels(self) -> tuple[str, str]:
        return (self.channel, self.priority)


@dataclass(frozen=True)
class Fact:
    """A metric fact of a settled event: count ``n`` (±1) of ``measure`` at ``ts``."""

    measure: str
    ts: int
    channel: str
    priority: str
    n: int = 1
    duration_ms: int | None = None


def _timed(
    facts: list[Fact], measure: str, ts: int, labels: tuple[str, str], start: int,
    business: BusinessClock | None,
) -> None:  # fmt: skip
    """A duration fact ``start`` → ``ts``, and its business-hours twin when there is a schedule."""
    facts.append(Fact(measure, ts, *labels, duration_ms=ts - start))
    if business is not None:
        facts.append(Fact(BUSINESS[measure], ts, *labels, duration_ms=business(start, ts)))


def apply_event(
    t: Ticket, e: TicketEvent, facts: list[Fact] | None, business: BusinessClock | None = None
) -> None:
    """Move a ticket through one event (in event-time order), noting the facts it completes.

    ``business``: with a schedule, every time is also noted in business hours.
    """
    t.last_ts = max(t.last_ts, e.ts)
    if e.kind == CREATED:
        if t.created is not None:
            return  # a duplicate creation changes nothing
        t.created, t.channel, t.priority, t.by_agent = e.ts, e.channel, e.priority, e.flag
        if t.status == UNKNOWN:
            t.status = OPEN
        if facts is not None:
            facts.append(Fact("new", e.ts, *t.labels()))
    elif e.kind == REPLY:
        if not e.flag or t.created is None or t.replied:
            return
        t.agent_replies += 1
        if t.agent_replies == (2 if t.by_agent else 1):
            t.replied = True
            if facts is not None:
                _timed(facts, "frt", e.ts, t.labels(), t.created, business)
    elif e.kind == SOLVED:
        if t.status == IS_CLOSED:
            return
        labels = t.labels()
        if t.status == IS_SOLVED and facts is not None:
            # Solved again with no reopen between: helpdesks that reopen on a requester's reply
            # send no ticket_reopened, so this solve is a reopen too, here and now.
            facts.append(Fact("reopens", e.ts, *labels))
        t.status = IS_SOLVED
        t.solves += 1
        if facts is not None:
            facts.append(Fact("solved", e.ts, *labels))
        if t.created is None:
            return  # solved before its creation (or one never seen): no resolution times
        previous, t.full_solve = t.full_solve, e.ts
        previous_business = t.full_business
        t.full_business = None if business is None else business(t.created, e.ts)
        if facts is None:
            return
        if t.solves == 1:
            _timed(facts, "fres", e.ts, labels, t.created, business)
        if previous is not None:  # full resolution moves to the latest solve
            facts.append(Fact("full", previous, *labels, -1, previous - t.created))
            if previous_business is not None:
                facts.append(Fact(BUSINESS["full"], previous, *labels, -1, previous_business))
        _timed(facts, "full", e.ts, labels, t.created, business)
    elif e.kind == REOPENED:
        if t.status == IS_SOLVED:
            t.status = OPEN
            if facts is not None:
                facts.append(Fact("reopens", e.ts, *t.labels()))  # when it happens (Zendesk)
    else:
        t.status = IS_CLOSED


def settle_ticket(
    t: Ticket, events: Iterable[TicketEvent], watermark: int, business: BusinessClock | None = None
) -> tuple[list[Fact], str]:
    """Settle the events before the watermark (in order), keep the rest pending.

    Returns the facts and the backlog label the ticket now counts under ("" if not open), from
    everything known including the pending events.
    """
    ready: list[TicketEvent] = []
    rest: list[TicketEvent] = []
    for e in sorted(events):
        # An event stamped at the watermark itself can still be followed by an earlier one.
        (ready if e.ts < watermark else rest).append(e)
    facts: list[Fact] = []
    for e in ready:
        apply_event(t, e, facts, business)
    t.pending = rest
    live = msgspec.structs.replace(t)
    for e in rest:
        apply_event(live, e, None)
    return facts, (field(*live.labels()) if live.status == OPEN else "")


def record(fact: Fact, deltas: Deltas) -> None:
    """A fact's counters (all, per channel, per priority) and duration-histogram entries."""
    minute = fact.ts // 60_000 * 60
    suffixes = ("", field("", "channel", fact.channel), field("", "priority", fact.priority))
    stem = STEM + fact.measure
    if fact.duration_ms is None:
        for suffix in suffixes:
            deltas.count(minute, stem + suffix, fact.n)
        return
    for suffix in suffixes:
        deltas.count(minute, stem + ".n" + suffix, fact.n)
        deltas.count(minute, stem + ".ms" + suffix, fact.n * fact.duration_ms)
    bucket = bucket_field(fact.duration_ms // 1000)
    m = fact.measure
    deltas.hash_count(minute, DURATION_HASH, field(m, "all", bucket), fact.n)
    deltas.hash_count(minute, DURATION_HASH, field(m, "channel", fact.channel, bucket), fact.n)
    deltas.hash_count(minute, DURATION_HASH, field(m, "priority", fact.priority, bucket), fact.n)


def move_backlog(before: str, after: str, deltas: Deltas) -> None:
    for label, step in ((before, -1), (after, 1)):
        if label:
            channel, priority = label.split(FIELD_SEP)
            deltas.total(BACKLOG, "all", step)
            deltas.total(BACKLOG, field("channel", channel), step)
            deltas.total(BACKLOG, field("priority", priority), step)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Ticket).decode


class TicketState:
    """Tickets as engine keyed state: one hash field per ticket (digest of its id)."""

    name = "tix"
    families = frozenset({Family.SUPPORT.value})
    pending = False  # no pending records after the values (stream.engine.keyed)

    def __init__(
        self,
        channels: BoundedLabels,
        priorities: BoundedLabels,
        ttl_ms: int = 30 * 86_400_000,
        due_limit: int = 20_000,
        business_hours: BusinessHours | None = None,
    ) -> None:
        self.channels = channels
        self.priorities = priorities
        self.ttl_ms = ttl_ms
        self.due_limit = due_limit
        self.business = None if business_hours is None else business_hours.business_ms

    def plan(self, items: Mapping[str, object], watermark: int) -> list[str]:
        """Every touched ticket is read (:meth:`stream.engine.keyed.KeyedState.plan`)."""
        return list(items)

    def handlers(self) -> dict[str, Handler]:
        return {t: self.lifecycle for t in _KINDS}

    def lifecycle(self, event: Event, minute: int, deltas: Deltas) -> None:
        props = event.props
        kind = _KINDS[event.type]
        if kind == CREATED:
            item = TicketEvent(
                event.ts_ms,
                kind,
                self.channels(props.channel),
                self.priorities(props.priority),
                props.author == "agent",
            )
        elif kind == REPLY:
            public_agent = props.author == "agent" and props.public is not False
            item = TicketEvent(event.ts_ms, kind, flag=public_agent)
        else:
            item = TicketEvent(event.ts_ms, kind)
        deltas.keyed_item(self.name, props.ticket_id, item)

    def field_of(self, key: str) -> str:
        # Ticket ids are free text: a digest keeps fields short and delimiter-free.
        return pair_digest(key)

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
            ticket = _decode(before) if before else Ticket()
            events = [*ticket.pending, *items.get(name, ())]
            facts, backlog = settle_ticket(ticket, events, watermark, self.business)
            for fact in facts:
                record(fact, deltas)
            if backlog != ticket.backlog:
                move_backlog(ticket.backlog, backlog, deltas)
                ticket.backlog = backlog
            if ticket.pending:
                due = ticket.pending[0].ts + 1
            elif ticket.status == OPEN:
                due = NEVER_DUE
            else:  # solved, closed or never seen created: forget it after the TTL
                due = ticket.last_ts + self.ttl_ms
                if due <= watermark:
                    if before is not None:
                        updates += (name, "", -1)
                    continue
            updates += (name, _encode(ticket).decode(), due)
        return updates


# ---- read side ---------------------------------------------------------------------------

SUPPORT = (Family.SUPPORT.value,)
#: Duration measure -> (metric name stem, what it measures, Prometheus histogram).
TIMES = {
    "frt": ("first_reply_time", "ticket_created → first public agent reply", "first_reply"),
    "fres": ("first_resolution_time", "ticket_created → first solve", "first_resolution"),
    "full": ("full_resolution_time", "ticket_created → latest solve", "full_resolution"),
}
TIME_BUCKETS = (60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 86400, 3 * 86400, 7 * 86400)


def _count(measure: str) -> Compute:
    async def compute(q: Query, r: Reader) -> list[Value]:
        suffix, _ = one_dim_slice(q, DIMENSIONS)
        return [float(w.get(STEM + measure + suffix, 0)) for w in await counters(q, r, SUPPORT)]

    return compute


def _mean(measure: str) -> Compute:
    async def compute(q: Query, r: Reader) -> list[Value]:
        suffix, _ = one_dim_slice(q, DIMENSIONS)
        stem = STEM + measure
        return [
            ratio(float(w.get(stem + ".ms" + suffix, 0)), w.get(stem + ".n" + suffix, 0), 0.001)
            for w in await counters(q, r, SUPPORT)
        ]

    return compute


def _median(measure: str) -> Compute:
    async def compute(q: Query, r: Reader) -> list[Value]:
        _, prefix = one_dim_slice(q, DIMENSIONS)
        return await hash_median(q, r, SUPPORT, DURATION_HASH, measure + FIELD_SEP + prefix)

    return compute


async def _backlog(q: Query, r: Reader) -> list[Value]:
    """Open tickets now: a current level (no history), so only the window holding now has it."""
    suffix, _ = one_dim_slice(q, DIMENSIONS)
    name = suffix[1:] if suffix else "all"
    now = q.now if q.now is not None else time.time()
    current = q.windows.start_of(q.granularity, now)
    if current not in q.starts:
        return [None] * len(q.starts)
    shards = await r.shards(SUPPORT)
    value = float(await r.total_field(shards, BACKLOG, name))
    return [value if s == current else None for s in q.starts]


#: The counted facts: measure -> (metric, description, Prometheus gauge, its help).
COUNTED = {
    "new": (
        "tickets_created",
        "Tickets created (settled once the watermark passes them).",
        "engagement_tickets_created",
        "Tickets created (settled).",
    ),
    "solved": (
        "tickets_solved",
        "Ticket solves (a solve after a reopen, or of a ticket already solved, counts again).",
        "engagement_tickets_solved",
        "Ticket solves (settled).",
    ),
    "reopens": (
        "ticket_reopens",
        "Reopens of solved tickets, when they happen: a ticket_reopened, or a solve of a "
        "ticket already solved (an implicit reopen).",
        "engagement_ticket_reopens",
        "Reopens of solved tickets (explicit or by a second solve).",
    ),
}


def _specs() -> list[MetricSpec]:
    specs = [
        MetricSpec(
            metric,
            what,
            "count",
            _count(measure),
            dimensions=DIMENSIONS,
            families=SUPPORT,
            gauge=Gauge(gauge, doc, "settled"),
            settled=True,
        )
        for measure, (metric, what, gauge, doc) in COUNTED.items()
    ]
    specs.append(
        MetricSpec(
            "ticket_backlog",
            "Tickets open now (current value; only the window holding now has a point).",
            "count",
            _backlog,
            dimensions=DIMENSIONS,
            families=SUPPORT,
            gauge=Gauge("engagement_ticket_backlog", "Tickets open now.", "today"),
        )
    )
    for measure, (name, what, _) in TIMES.items():
        for business, hours, suffix in ((False, "calendar hours", ""), (True, "", "_business")):
            recorded = BUSINESS[measure] if business else measure
            where = " in business hours (support_business_hours)" if business else f" ({hours})"
            specs.append(
                MetricSpec(
                    f"{name}{suffix}_avg",
                    f"Mean {what}{where}, in the window of the completing event.",
                    "seconds",
                    _mean(recorded),
                    dimensions=DIMENSIONS,
                    families=SUPPORT,
                    business_hours=business,
                    settled=True,
                )
            )
            specs.append(
                MetricSpec(
                    f"{name}{suffix}_median",
                    f"Median {what}{' in business hours' if business else ''} over duration "
                    "buckets: exact whole seconds below 64 s, within 1/64 (1.6 %) above.",
                    "seconds",
                    _median(recorded),
                    dimensions=DIMENSIONS,
                    families=SUPPORT,
                    business_hours=business,
                    settled=True,
                )
            )
    return specs


SPECS = _specs()


async def export(ctx: ExportContext) -> None:
    """Ticket counts by channel and priority, the time histograms (``_gsum / _gcount`` is the
    mean, ``histogram_quantile`` the median; business-hours twins in that mode) and the backlog
    by channel and priority."""
    shards = await ctx.reader.shards(SUPPORT)
    times = [
        (m, m, f"engagement_ticket_{p}_seconds", w, "calendar") for m, (_, w, p) in TIMES.items()
    ]
    if ctx.options.business_hours:
        times += [
            (m, BUSINESS[m], f"engagement_ticket_{p}_business_seconds", w, "business")
            for m, (_, w, p) in TIMES.items()
        ]
    for label, g, start in ctx.spans("settled", settled=True):
        window = str(label)
        fields = await ctx.counters(SUPPORT, g, start)
        for measure, (_, _, name, doc) in COUNTED.items():
            for dim in DIMENSIONS:
                per = ctx.gauge(f"{name}_by_{dim}", f"{doc[:-1]} by {dim}.", ["window", dim])
                values = labelled(fields, STEM + measure + FIELD_SEP + dim)
                for (value,), n in ctx.cap(values).items():
                    per.add_metric([window, value], n)
        (durations,) = await ctx.reader.hashes(shards, g, [start], DURATION_HASH)
        for _, recorded, name, what, hours in times:
            counts = bucket_counts(durations, field(recorded, "all", ""))
            doc = what.replace("ticket_created", "Ticket created")
            ctx.histogram(
                name, f"{doc}. Whole seconds in duration buckets, {hours} hours.", ["window"]
            ).add_metric(
                [window],
                histogram_buckets(counts, TIME_BUCKETS),
                gsum_value=fields.get(f"{STEM}{recorded}.ms", 0) / 1000,
            )
    totals = await ctx.reader.totals(shards, BACKLOG)
    for dim in DIMENSIONS:
        per = ctx.gauge(f"engagement_ticket_backlog_by_{dim}", f"Tickets open now by {dim}.", [dim])
        for (value,), n in ctx.cap(labelled(totals, dim)).items():
            per.add_metric([value], n)
