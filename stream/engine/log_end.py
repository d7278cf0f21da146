"""Which partitions' logs end before the offset stored for them (Redis ahead of Kafka).

``ListOffsets`` alone cannot decide it: Tansu 0.6 answers the *base* offset of the last record
batch + 1, so after a batched publish the reported end lags the real one by up to a batch, and a
healthy partition would look like one whose log was wiped. So a reported end at or before the
stored offset is only a suspicion: the tail is fetched from one before it (one fetch returns the
whole last batch) and the highest offset actually read decides. On a broker that answers
correctly this reads one record per suspicious partition, and only those.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["ends_if_behind", "read_tail_ends"]


class _Config(Protocol):
    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def client_kwargs(self) -> dict[str, Any] | None: ...


async def ends_if_behind(
    consumer: AIOKafkaConsumer, config: _Config, stored: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Log end (next offset) of each partition whose stored offset is at or past it."""
    wanted = sorted(tp for tp, offset in stored.items() if offset >= 0)
    if not wanted:
        return {}
    reported: dict[TopicPartition, int] = dict(await consumer.end_offsets(wanted))
    suspects = {tp: end for tp, end in reported.items() if stored[tp] >= end}
    tails = [tp for tp, end in suspects.items() if end > 0]
    if tails:
        suspects.update(await _read_tails(config, {tp: suspects[tp] for tp in tails}))
    return {tp: end for tp, end in suspects.items() if stored[tp] >= end}


async def _read_tails(
    config: _Config, reported: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    # A consumer of its own, outside the group: the engine's consumer must not seek.
    tail = AIOKafkaConsumer(
        bootstrap_servers=config.bootstrap_servers,
        enable_auto_commit=False,
        **(config.client_kwargs or {}),
    )
    await tail.start()
    try:
        return await read_tail_ends(tail, reported, until_quiet=False)
    finally:
        await tail.stop()


async def read_tail_ends(
    consumer: AIOKafkaConsumer,
    reported: dict[TopicPartition, int],
    *,
    until_quiet: bool,
    timeout_s: float = 30.0,
) -> dict[TopicPartition, int]:
    """The real end of each partition: read from one before the reported end, keep the highest
    offset fetched.

    ``consumer`` must be a started consumer outside any group (it is assigned and seeks). With
    ``until_quiet`` it reads until a fetch returns nothing (a log still being written has no
    end to find before ``timeout_s``); otherwise it stops once every partition answered, which
    is all a check of a partition that is not being written needs.
    """
    tails = [tp for tp, end in reported.items() if end > 0]
    ends = dict(reported)
    if not tails:
        return ends
    consumer.assign(tails)
    for tp in tails:
        consumer.seek(tp, reported[tp] - 1)
    pending = set(tails)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch: dict[TopicPartition, list[Any]] = await consumer.getmany(timeout_ms=300)
        for tp, records in batch.items():
            ends[tp] = max(ends[tp], records[-1].offset + 1)
            pending.discard(tp)
        if not batch or (not pending and not until_quiet):
            break
    return ends
