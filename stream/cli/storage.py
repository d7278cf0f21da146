"""``stream store``: maintenance of the Redis store itself (offline steps, workers stopped)."""

from __future__ import annotations

import asyncio

import click

from stream.cli.common import console, load_settings
from stream.engine.placement import Placement

__all__ = ["store_group"]


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
