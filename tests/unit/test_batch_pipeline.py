"""The engine's held batch: dropping what was folded with a replaced partition state (re-seeked
or revoked) keeps folds, plans, reads and read results aligned (a misaligned settle would write
one partition's state into another's)."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from stream.engine import store
from stream.engine.batch import Folded, HeldBatch, KeyedPlan, PartitionState, still_current
from stream.engine.dedupe import PartitionWindow
from stream.engine.deltas import Deltas
from stream.engine.fold import FoldResult
from stream.metrics.sessions import SessionRules, SessionState

Current = dict[TopicPartition, PartitionState]


def _batch(partitions: list[int]) -> tuple[HeldBatch, list[dict[str, Any]], Current]:
    keyed = SessionState(SessionRules())
    folds, plans, reads, stored = [], [], [], []
    current: Current = {}
    for p in partitions:
        tp = TopicPartition("clicks", p)
        result = FoldResult(Deltas(), 0, 9, 0)
        state = PartitionState(f"clickstream.{p}", -1, 0, PartitionWindow(0))
        folds.append(Folded(tp, state, result, {}))
        current[tp] = state
        plans.append(KeyedPlan(keyed, result, {f"f{p}": []}, 0))
        reads.append(store.KeyedRead(f"k{p}", f"d{p}", [f"f{p}"], 0, 10))
        stored.append({f"f{p}": f"v{p}".encode()})
    return HeldBatch(folds, plans, reads, 0.0, 30, 0), stored, current


def _reseek(current: Current, partition: int) -> None:
    tp = TopicPartition("clicks", partition)
    current[tp] = PartitionState(current[tp].shard, -1, 0, PartitionWindow(0))


def test_drop_keeps_the_survivors_aligned() -> None:
    held, stored, current = _batch([0, 1, 2])
    _reseek(current, 1)
    kept = held.drop_stale(current, stored)
    assert [f.tp.partition for f in held.folds] == [0, 2]
    assert [r.state_key for r in held.reads] == ["k0", "k2"]
    assert [plan.result for plan in held.plans] == [f.result for f in held.folds]
    assert kept == [{"f0": b"v0"}, {"f2": b"v2"}]


def test_drop_before_the_read_came_back() -> None:
    held, _, current = _batch([0, 1])
    del current[TopicPartition("clicks", 0)]  # revoked
    assert held.drop_stale(current, []) == []
    assert [f.tp.partition for f in held.folds] == [1]
    assert [r.state_key for r in held.reads] == ["k1"]


def test_current_states_change_nothing() -> None:
    held, stored, current = _batch([0, 1])
    assert held.drop_stale(current, stored) == stored
    assert len(held.folds) == len(held.plans) == len(held.reads) == 2


def test_records_fetched_before_a_reseek_or_revocation_are_dropped() -> None:
    """Only partitions whose state is the one they were fetched with keep their records."""
    _, _, current = _batch([0, 1, 2, 3])
    tps = [TopicPartition("clicks", p) for p in range(5)]
    fetched = {tp: [f"r{tp.partition}"] for tp in tps}
    fetched_with = {tp: current.get(tp) for tp in tps}  # partition 4: not ours at fetch time
    assert still_current(fetched, fetched_with, current) == {tp: fetched[tp] for tp in tps[:4]}

    _reseek(current, 1)  # the store watch re-seeked it while the batch waited for the lock
    del current[tps[2]]  # revoked
    current[tps[4]] = PartitionState("clickstream.4", -1, 0, PartitionWindow(0))  # assigned
    kept = still_current(fetched, fetched_with, current)
    assert kept == {tps[0]: ["r0"], tps[3]: ["r3"]}
