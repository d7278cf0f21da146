"""Keyed open state for metrics that span batches (sessions, tickets, subscriptions, customer
scores).

The fold collects a batch's items per entity key (``Deltas.keyed``); before the batch is applied
the engine reads the entities it touches plus those whose due time the watermark has reached
(one read-only round trip), the metric's ``settle`` folds items into the stored state and records
the metric facts of whatever it closes, and the new state rides in the same atomic, offset-guarded
apply as every other delta. A zombie that read stale state is refused by the offset guard like any
other stale batch, so keyed state is exactly-once too. Due times are event time (watermark), so a
replay of last month closes last month's entities, and an entity that never sees another event
still closes once the partition's watermark passes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from stream.contract.decode import Event
from stream.engine.deltas import Deltas

__all__ = [
    "NEVER_DUE",
    "KeyedState",
    "KeyedUpdates",
    "fields_by_key",
    "fields_to_read",
    "keeps_pending",
    "updates_by_field",
]

#: Due time of a stored entity with nothing to settle: only a new event of its own wakes it.
NEVER_DUE = 2**53 - 1

#: A state's settled fields, flat as apply.lua's op K takes them: field, new value (``""``:
#: delete the field), due time (-1: none), and so on. Settling builds it in this shape because
#: one step per field between settle and the apply call cost ~0.3 µs a field in Python.
KeyedUpdates = list[str | int]


class KeyedState(Protocol):
    #: Short name used in key names (``P:{shard}:k:<name>``) and in ``Deltas.keyed``.
    name: str
    #: Most due entities settled per partition and batch (the rest follow in the next batches).
    due_limit: int
    #: Families (shard prefixes) whose partitions carry this state.
    families: frozenset[str]
    #: Does the state keep pending records after its values (apply.lua op A)? Then the keyed
    #: read returns (stored value, pending record) pairs. Customer scores do; the others: False.
    pending: bool

    def handlers(self) -> dict[str, Callable[[Event, int, Deltas], None]]:
        """Fold handlers that collect this state's items into ``Deltas.keyed``."""
        ...

    def field_of(self, key: Any) -> str:
        """The hash field (stable, delimiter-free) that stores an entity's state."""
        ...

    def plan(self, items: Mapping[str, list[Any]], watermark: int) -> list[str]:
        """The touched fields whose stored state this batch must read (the due ones are read
        anyway). Every touched field (``list(items)``), unless the state can defer some:
        customer scores merge most touches into a pending record without reading the state."""
        ...

    def settle(
        self,
        stored: Mapping[str, str | bytes | None],
        items: Mapping[str, list[Any]],
        watermark: int,
        deltas: Deltas,
    ) -> KeyedUpdates:
        """New value and due time of every field that changed (:data:`KeyedUpdates`); closed
        entities go into ``deltas``.

        ``stored`` holds every field in ``items`` and every due field; ``items`` maps fields to
        this batch's items (due-only fields have none).
        """
        ...


def fields_by_key(state: KeyedState, deltas: Deltas) -> dict[str, list[Any]]:
    """This batch's items of one state, by storage field."""
    out: dict[str, list[Any]] = {}
    for key, items in deltas.keyed.get(state.name, {}).items():
        f = state.field_of(key)
        existing = out.get(f)
        if existing is None:
            out[f] = items
        else:
            existing.extend(items)
    return out


def fields_to_read(state: KeyedState, items: Mapping[str, list[Any]], watermark: int) -> list[str]:
    """The touched fields whose stored state the batch needs (the due ones are read anyway):
    the state's own :meth:`KeyedState.plan`."""
    return state.plan(items, watermark)


def keeps_pending(state: KeyedState) -> bool:
    """Does the state keep pending records after its values (apply.lua op A)?"""
    return state.pending


def updates_by_field(updates: KeyedUpdates) -> dict[str, tuple[str | None, int | None]]:
    """:data:`KeyedUpdates` by field: (new value or None to delete, due time or None)."""
    out: dict[str, tuple[str | None, int | None]] = {}
    for i in range(0, len(updates), 3):
        name, value, due = updates[i], updates[i + 1], updates[i + 2]
        assert isinstance(name, str) and isinstance(value, str) and isinstance(due, int)
        out[name] = (value or None, None if due < 0 else due)
    return out
