"""Move a store's keys from one placement to the other (``stream store migrate``).

Offline: every worker must be stopped. The move copies each key of each shard under its new hash
tag (``DUMP`` + ``RESTORE … REPLACE`` with the key's remaining time to live, so the copy lands
on whichever node owns the new slot), checks that no shard's progress moved meanwhile (a live
worker would make the copy stale), records the new placement, and only then deletes the old
keys. Each step can be repeated, so a move that dies part-way is finished by running it again:

* died while copying → the old keys and the old placement record are intact; the rerun copies
  everything again (``REPLACE``);
* died while deleting → the placement record already names the target; the rerun only deletes
  what is left under the other placement's tags.

A dry run (the default) reports what would move without writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.engine import store
from stream.engine.keys import Keys
from stream.engine.placement import Placement

__all__ = ["MigrationReport", "migrate_placement", "renamed"]


@dataclass
class MigrationReport:
    source: Placement | None
    target: Placement
    shards: int = 0
    #: keys copied under their new tag (or, in a dry run, that would be)
    copied: int = 0
    #: keys under the old tags deleted (or, in a dry run, that would be)
    deleted: int = 0
    applied: bool = False
    notes: list[str] = field(default_factory=list)


def renamed(key: str, old_tag: str, new_tag: str) -> str:
    """``key`` under ``new_tag``: only the hash tag changes, never the rest of the name."""
    old = "{" + old_tag + "}"
    if old not in key:
        raise ValueError(f"{key!r} does not carry the tag {old_tag!r}")
    return key.replace(old, "{" + new_tag + "}", 1)


async def _keys_by_tag(
    client: store.RedisClient, prefix: str, tags: dict[str, str]
) -> dict[str, list[str]]:
    """One SCAN of the deployment's keys, grouped by the shard whose (old) tag they carry."""
    found: dict[str, list[str]] = {shard: [] for shard in tags.values()}
    async for raw in client.scan_iter(match=f"{prefix}:{{*", count=5000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        start = len(prefix) + 2
        end = key.find("}", start)
        shard = tags.get(key[start:end]) if end > 0 else None
        if shard is not None:
            found[shard].append(key)
    return found


async def _offsets(client: store.RedisClient, keys: Keys, shards: list[str]) -> list[object]:
    return [await client.hget(keys.state(shard), "offset") for shard in shards]


async def migrate_placement(
    client: store.RedisClient, prefix: str, target: Placement, apply: bool
) -> MigrationReport:
    source = await store.stored_placement(client, Keys(prefix, target))
    report = MigrationReport(source, target, applied=apply)
    raw_shards = await client.smembers(Keys(prefix).shards)
    shards = sorted(s.decode() if isinstance(s, bytes) else str(s) for s in raw_shards)
    report.shards = len(shards)
    new = Keys(prefix, target)
    if source is None:
        report.notes.append("empty store: nothing to move")
        if apply:
            await client.set(new.placement_marker, target.value)
        return report
    other = Placement.PARTITION if target is Placement.SPREAD else Placement.SPREAD
    old = Keys(prefix, other)
    tags = {old.tag(s): s for s in shards if old.tag(s) != new.tag(s)}
    by_shard = await _keys_by_tag(client, prefix, tags)
    if source is target:
        # Already recorded: what is left under the other placement's tags is a previous move's
        # leftover (or nothing).
        report.deleted = sum(len(v) for v in by_shard.values())
        if report.deleted:
            report.notes.append(f"finishing a previous move: {report.deleted} old keys left")
        else:
            report.notes.append(f"already {target}: nothing to move")
        if apply:
            await _delete(client, by_shard)
        return report
    report.copied = report.deleted = sum(len(v) for v in by_shard.values())
    if not apply:
        return report
    moving = sorted(by_shard)
    before = await _offsets(client, old, moving)
    for shard, shard_keys in by_shard.items():
        old_tag, new_tag = old.tag(shard), new.tag(shard)
        for chunk in _chunks(shard_keys):
            async with client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.dump(key)
                    pipe.pttl(key)
                replies = await pipe.execute()
            async with client.pipeline(transaction=False) as pipe:
                for key, value, ttl in zip(chunk, replies[::2], replies[1::2], strict=True):
                    if value is not None and ttl != -2:  # else it expired meanwhile
                        pipe.restore(renamed(key, old_tag, new_tag), max(ttl, 0), value, True)
                await pipe.execute()
    if await _offsets(client, old, moving) != before:
        raise RuntimeError(
            "a shard's progress moved during the copy: a worker is still running. Stop every "
            "worker and run the move again (the old keys and placement are untouched)"
        )
    await client.set(new.placement_marker, target.value)
    await _delete(client, by_shard)
    return report


def _chunks(keys: list[str], size: int = 500) -> list[list[str]]:
    return [keys[i : i + size] for i in range(0, len(keys), size)]


async def _delete(client: store.RedisClient, by_shard: dict[str, list[str]]) -> None:
    for shard_keys in by_shard.values():
        for chunk in _chunks(shard_keys):
            async with client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.execute_command("UNLINK", key)  # a cluster pipeline's unlink() is async
                await pipe.execute()
