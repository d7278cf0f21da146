"""``stream store``: maintenance of the Redis store itself (offline steps, workers stopped)."""

from __future__ import annotations

import asyncio

import click

from stream.cli.common import console, load_settings
from stream.engine.placement import Placement

__all__ = ["reset", "store_group"]


@click.group("store")
def store_group() -> None:
    """Maintenance of the Redis store (stop every worker first)."""


@store_group.command("migrate")
@click.option(
    "--to",
    "target",
    type=click.Choice([p.value for p in Placement]),
    default=None,
    help="Target placement (default: the redis_placement setting).",
)
@click.option("--apply", is_flag=True, help="Move the keys; without it, only report (dry run).")
def migrate(target: str | None, apply: bool) -> None:
    """Move every key to another placement (hash tags), e.g. before moving onto Redis Cluster.

    Stop every worker first: the move refuses to finish if a shard's progress changes meanwhile.
    """
    from stream.engine import store
    from stream.infra.connections import redis_target
    from stream.tools.placement_migration import migrate_placement

    settings = load_settings()
    placement = Placement(target) if target else settings.redis_placement

    async def run() -> None:
        client = store.connect(redis_target(settings))
        try:
            report = await migrate_placement(client, settings.key_prefix, placement, apply)
        finally:
            await client.aclose()
        verb = "moved" if apply else "would move"
        console.print(
            f"placement {report.source or 'none (empty store)'} → {report.target}: "
            f"{report.shards} shards; {verb} {report.copied} keys, "
            f"{'deleted' if apply else 'would delete'} {report.deleted} old keys"
        )
        for note in report.notes:
            console.print(note)
        if not apply and report.copied + report.deleted:
            console.print("dry run: nothing written (add --apply)")

    asyncio.run(run())


@click.command("reset")
@click.option("--topic", required=True, help="An input topic (one of the topics.* settings).")
@click.option(
    "--partition", "partitions", type=int, multiple=True, help="Repeatable; default: every one."
)
@click.option("--apply", is_flag=True, help="Delete; without it, only report (dry run).")
def reset(topic: str, partitions: tuple[int, ...], apply: bool) -> None:
    """Start partitions over: delete their stored state and progress, nothing else.

    For a partition whose offset stored in Redis is past its log's end (topic recreated, broker
    data wiped, the wrong cluster): workers refuse to consume it and export
    stream_partition_offset_ahead = 1 until this runs. Running workers pick the partition up
    from the start of its log within seconds.
    """
    from stream.config.wiring import build_keys
    from stream.engine import store
    from stream.infra.connections import redis_target
    from stream.tools.partition_reset import reset_shards

    settings = load_settings()
    families = settings.topics.families()
    if topic not in families:
        raise click.ClickException(f"{topic!r} is not an input topic: {sorted(families)}")
    keys = build_keys(settings)

    async def run() -> None:
        client = store.connect(redis_target(settings))
        try:
            wanted = list(partitions)
            if not wanted:
                registered = {
                    m.decode() if isinstance(m, bytes) else str(m)
                    for m in await client.smembers(keys.shards)
                }
                prefix = families[topic] + "."
                wanted = sorted(int(s[len(prefix) :]) for s in registered if s.startswith(prefix))
            shards = [keys.shard(families[topic], p) for p in wanted]
            report = await reset_shards(client, keys, shards, apply)
        finally:
            await client.aclose()
        for shard, (offset, n) in report.found.items():
            verb = "deleted" if apply else "would delete"
            console.print(f"{shard}: stored offset {offset}; {verb} {n} keys")
        if not report.found:
            console.print(f"no stored partition of {topic}")
        elif not apply:
            console.print("dry run: nothing written (add --apply)")

    asyncio.run(run())
