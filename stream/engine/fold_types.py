"""What a fold works with and decides: records, results, dead-letter entries, the context.

Apart from the loop (:mod:`stream.engine.fold_core`) so that the loop's compiled build imports
these classes rather than defining copies of its own; :mod:`stream.engine.fold` is where the
rest of the code imports both from, and says what a fold does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stream.contract.decode import Decoder, Event
from stream.contract.types import FAMILY_OF, Family, Reason
from stream.engine.deltas import Deltas

__all__ = [
    "ACTIVE",
    "ACTIVE_SET",
    "AUTHORED",
    "EVENT_FIELD_PREFIX",
    "PASSIVE",
    "FoldContext",
    "FoldResult",
    "Handler",
    "Record",
    "Rejected",
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
