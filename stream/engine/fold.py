"""Fold one partition's records into deltas: decode, validate, watermark, dispatch. Pure.

This module holds what a fold works with and decides; the loop itself is
:mod:`stream.engine.fold_core`'s, run compiled when built (:func:`fold_records`).

The watermark (highest event time seen on the partition − allowed lateness) advances record by
record in offset order and is carried between batches (stored in Redis with the offset), so the
late/not-late decision for a record never depends on how the stream was cut into batches — a
replay decides exactly as the first run did.

Relayed records (other families' score inputs re-published into the home topic, marked by a
Kafka header: :mod:`stream.engine.relay`) take a side path on the partitions that accept them:
exactly-once by their lane's sequence number, then only the customer-state handlers. They are
judged late against the watermark like any event but do not move it, and they bypass the
``event_id`` window (their source partition deduplicated them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Protocol

from stream.contract.decode import Decoder, Event
from stream.contract.types import FAMILY_OF, Family, Reason
from stream.engine import compiled
from stream.engine.dedupe import PartitionWindow
from stream.engine.deltas import Deltas

__all__ = [
    "ACTIVE_SET",
    "EVENT_FIELD_PREFIX",
    "FoldContext",
    "FoldResult",
    "Handler",
    "Record",
    "Rejected",
    "fold_records",
]

Handler = Callable[[Event, int, Deltas], None]

#: Counter field of events accepted per type: ``ev|<type>``.
EVENT_FIELD_PREFIX = "ev|"
#: Distinct-count set of active users.
ACTIVE_SET = "active"


class Record(Protocol):
    """What the fold needs of a Kafka record (aiokafka's ConsumerRecord fits)."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


@dataclass(frozen=True)
class Rejected:
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int
    reason: Reason
    detail: str


@dataclass
class FoldResult:
    deltas: Deltas
    first_offset: int
    last_offset: int
    max_ts: int
    accepted: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    #: event times of a sample of accepted events, for the end-to-end lag histogram
    lag_sample_ts: list[int] = field(default_factory=list)
    #: relay high-water marks after the batch (partitions that accept relayed records)
    relay_hw: dict[str, int] | None = None
    #: relayed records by outcome (applied, duplicate, out_of_order, rejected)
    relayed: dict[str, int] = field(default_factory=dict)


#: Event types whose ``author`` property says who did it (support: agent, requester, bot).
SUPPORT_EVENT_TYPES = frozenset(str(t) for t, f in FAMILY_OF.items() if f is Family.SUPPORT)

#: Whether an event type makes its user active: never, always, or unless its ``author`` is one
#: of the passive authors (compared by identity in the fold: module constants).
PASSIVE, ACTIVE, AUTHORED = "passive", "active", "authored"
DispatchEntry = tuple[str, str, tuple[Handler, ...]]


@dataclass(frozen=True)
class FoldContext:
    decoder: Decoder
    handlers: Mapping[str, tuple[Handler, ...]]  # every family's handler per event type
    passive_events: frozenset[str]
    lateness_ms: int
    #: ``author`` values whose support events do not make the user active: every event of a
    #: ticket carries the requester's ``user_id``, whoever wrote it
    passive_authors: frozenset[str] = frozenset()
    lag_sample_every: int = 64
    #: handlers of relayed records (customer state only: they were counted on their own topic)
    relay_handlers: Mapping[str, tuple[Handler, ...]] = field(default_factory=dict)
    #: event type -> (counter field, whether it makes the user active, handlers): one lookup
    #: per event instead of four (filled on first sight of a type)
    dispatch: dict[str, DispatchEntry] = field(default_factory=dict, compare=False, repr=False)

    def dispatch_entry(self, kind: str) -> DispatchEntry:
        if kind in self.passive_events:
            activity = PASSIVE
        elif kind in SUPPORT_EVENT_TYPES and self.passive_authors:
            activity = AUTHORED  # ``author`` says who did it: active unless a passive author
        else:
            activity = ACTIVE
        entry = (EVENT_FIELD_PREFIX + kind, activity, tuple(self.handlers.get(kind, ())))
        self.dispatch[kind] = entry
        return entry


def fold_records(
    records: Sequence[Record],
    ctx: FoldContext,
    max_ts: int,
    now_ms: int,
    into: FoldResult | None = None,
    window: PartitionWindow | None = None,
    warm_until: int = -1,
    relay_hw: dict[str, int] | None = None,
) -> FoldResult | None:
    """Fold records (one partition, offset order) given the partition's stored max event time.

    ``into`` continues an earlier result of the same partition with the records that follow
    it, so a large batch can be folded in slices (the engine yields to the event loop between
    them); the outcome is the same as one call over all records. ``window`` detects producer
    duplicates by event id; records at or before ``warm_until`` (already applied by an earlier
    owner) only rebuild it. None when every record was such a warm-up record and nothing
    was folded before. ``relay_hw`` (the partition's stored relay high-water marks; None: the
    partition does not accept relayed records) is copied into the result, which carries it on.

    The loop is :mod:`stream.engine.fold_core`'s, compiled when built (below). Called once per
    slice of a batch, not per record.
    """
    return _core.fold_records(  # type: ignore[no-any-return]
        records, ctx, max_ts, now_ms, into, window, warm_until, relay_hw
    )


# The loop's module imports the types above, so it comes last. (Imported first, it imports this
# module, which finds it half-built here; ``_core``'s function is only looked up per call.)
from stream.engine import fold_core  # noqa: E402

_core: ModuleType = compiled.load(fold_core)
