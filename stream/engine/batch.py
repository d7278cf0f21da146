"""A batch on its way from fold to apply, as data: each partition's fold, the keyed reads planned
for them, and the batch held while its read is in flight (see "the batch" in
:mod:`stream.engine.consumer`); planning those reads and settling their results.

Pure: no Kafka, no Redis. :class:`~stream.engine.consumer.BatchEngine` and ``stream
engine-profile`` (which runs the same batch path without Kafka) both plan and settle with these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiokafka import TopicPartition

from stream.engine import store
from stream.engine.dedupe import PartitionWindow
from stream.engine.fold import FoldResult
from stream.engine.keyed import KeyedState, fields_by_key, fields_to_read, keeps_pending
from stream.engine.keys import Keys

__all__ = [
    "Folded",
    "HeldBatch",
    "KeyedPlan",
    "PartitionState",
    "plan_keyed_reads",
    "settle_keyed",
    "still_current",
]


@dataclass
class PartitionState:
    shard: str
    offset: int  # last applied offset (-1: none)
    max_ts: int
    window: PartitionWindow  # producer-duplicate detection (stream.engine.dedupe)
    warm_until: int = -1  # records up to here were applied before: they only rebuild `window`
    relay_hw: dict[str, int] | None = None  # home shards: highest relay seq applied per source


@dataclass(frozen=True, slots=True)
class Folded:
    """One partition's part of a folded batch."""

    tp: TopicPartition
    state: PartitionState
    result: FoldResult
    relay_before: dict[str, int]  # the partition's relay marks before the batch


class KeyedPlan(NamedTuple):
    """One keyed state's read for one folded partition, and what its settle needs."""

    state: KeyedState
    result: FoldResult  # the partition's folded batch: its deltas receive the settle's output
    items: dict[str, list[Any]]  # this batch's items by storage field
    watermark: int


@dataclass(slots=True)
class HeldBatch:
    """A folded batch waiting for its keyed read (sent behind the previous batch's apply)."""

    folds: list[Folded]
    plans: list[KeyedPlan]  # one per read, in the same order
    reads: list[store.KeyedRead]
    started: float
    total: int
    now_ms: int

    def drop_stale(
        self, partitions: Mapping[TopicPartition, PartitionState], stored: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Forget the partitions folded with a state that is no longer the current one
        (re-seeked or revoked since); return ``stored`` (read results, one per plan, or empty
        when not read yet) without theirs."""
        gone = {id(f.result) for f in self.folds if partitions.get(f.tp) is not f.state}
        if not gone:
            return list(stored)
        self.folds = [f for f in self.folds if id(f.result) not in gone]
        keep = [i for i, plan in enumerate(self.plans) if id(plan.result) not in gone]
        self.plans = [self.plans[i] for i in keep]
        self.reads = [self.reads[i] for i in keep]
        return [stored[i] for i in keep] if stored else []


def still_current(
    batch: Mapping[TopicPartition, list[Any]],
    fetched_with: Mapping[TopicPartition, PartitionState | None],
    partitions: Mapping[TopicPartition, PartitionState],
) -> dict[TopicPartition, list[Any]]:
    """The fetched records whose partition still has the state it had when the fetch returned.

    A partition re-seeked in between (the store watch found Redis had lost its progress) has a
    new state whose position lies before these records: folded with it, they would pass the
    offset guard (the guard checks where the batch starts from, not that it starts right after)
    and enter its fresh duplicate window, so that the re-read dead-letters them as duplicates
    (or, with the window off, counts them twice). The seek already moved the consumer back, so
    dropping them loses nothing; the same holds for a partition revoked, or revoked and assigned
    again, in between.
    """
    return {
        tp: records
        for tp, records in batch.items()
        if (state := partitions.get(tp)) is not None and state is fetched_with.get(tp)
    }


def plan_keyed_reads(
    folds: Sequence[tuple[str, str, FoldResult]],
    keyed_states: Sequence[KeyedState],
    keys: Keys,
    lateness_ms: int,
) -> tuple[list[KeyedPlan], list[store.KeyedRead]]:
    """What to read for each (family, shard, folded batch): one read per keyed state it hosts."""
    plans: list[KeyedPlan] = []
    reads: list[store.KeyedRead] = []
    for family, shard, result in folds:
        watermark = result.max_ts - lateness_ms
        for keyed in keyed_states:
            if family not in keyed.families:
                continue
            items = fields_by_key(keyed, result.deltas)
            plans.append(KeyedPlan(keyed, result, items, watermark))
            reads.append(
                store.KeyedRead(
                    keys.keyed(shard, keyed.name),
                    keys.keyed_due(shard, keyed.name),
                    fields_to_read(keyed, items, watermark),
                    watermark,
                    keyed.due_limit,
                    keeps_pending(keyed),
                )
            )
    return plans, reads


def settle_keyed(plans: Sequence[KeyedPlan], stored: Sequence[dict[str, Any]]) -> None:
    """Settle each plan's stored values and batch items into its batch's deltas."""
    for plan, values in zip(plans, stored, strict=True):
        plan.result.deltas.keyed_updates[plan.state.name] = plan.state.settle(
            values, plan.items, plan.watermark, plan.result.deltas
        )
