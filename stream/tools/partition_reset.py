"""Start partitions over in the store (``stream reset``): for a partition whose stored offset is
past its log's end (topic recreated, broker data wiped, the wrong cluster), which the worker
refuses to consume.

Exact: it deletes only the keys of the named partitions' shards (every key carrying their hash
tag: windows, keyed state, running totals, rankings, outboxes, progress) — nothing of any other
partition. One thing survives: the outboxes' sequence counters in the partition state. Home
shards remember the highest relay sequence they applied from each source shard, and churn-risk
ids are numbered by them; numbering on after them keeps both exactly-once.

A dry run (the default) reports what would go without writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.engine import store
from stream.engine.keys import Keys
from stream.engine.relay import OUTBOX as RELAY_OUTBOX
from stream.metrics.score.state import OUTBOX as CHURN_OUTBOX

__all__ = ["ResetReport", "reset_shards"]


@dataclass
class ResetReport:
    shards: list[str]
    #: shard -> (its stored offset or -1, keys deleted or that would be)
    found: dict[str, tuple[int, int]] = field(default_factory=dict)
    applied: bool = False


def _sequence_field(name: str) -> bool:
    """An outbox's sequence counter (``churn``, ``relay.<partition>``) in a partition state."""
    return name == CHURN_OUTBOX or name.startswith(RELAY_OUTBOX + ".")


async def _shard_keys(client: store.RedisClient, keys: Keys, shard: str) -> list[str]:
    pattern = f"{keys.prefix}:{{{keys.tag(shard)}}}*"
    found = [
        raw.decode() if isinstance(raw, bytes) else str(raw)
        async for raw in client.scan_iter(match=pattern, count=5000)
    ]
    return sorted(found)


async def reset_shards(
    client: store.RedisClient, keys: Keys, shards: list[str], apply: bool
) -> ResetReport:
    report = ResetReport(shards, applied=apply)
    for shard in shards:
        progress = await store.read_progress(client, keys, shard)
        found = await _shard_keys(client, keys, shard)
        report.found[shard] = (progress.offset, len(found))
        if not apply:
            continue
        state = keys.state(shard)
        for key in found:
            if key == state:
                continue
            await client.execute_command("UNLINK", key)
        raw = await client.hgetall(state)
        names = [f.decode() if isinstance(f, bytes) else str(f) for f in raw]
        doomed = [n for n in names if not _sequence_field(n)]
        if doomed:
            await client.hdel(
                state, *doomed
            )  # the offset goes last: it is what the worker waits on
    return report
