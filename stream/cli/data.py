"""Commands over event data: ``simulate`` traffic, ``replay`` a file, ``check`` a file against
the contract."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream.cli.common import console, load_settings
from stream.config.settings import Settings

if TYPE_CHECKING:
    from stream.tools.simulate import SimulationConfig

__all__ = ["check", "replay", "simulate", "simulation_config"]


@click.command()
@click.option("--seed", default=42, show_default=True)
@click.option("--users", default=2000, show_default=True)
@click.option("--count", type=int, default=None, help="Stop after N events.")
@click.option("--rate", type=float, default=None, help="Max events/s (batch mode).")
@click.option("--live", is_flag=True, help="Stamp events with the wall clock, paced in real time.")
@click.option(
    "--catch-up-speed",
    type=float,
    default=None,
    help="Live mode: publish events stamped before now at this many times real time "
    "(default: all at once).",
)
@click.option("--activity", default=1.0, show_default=True)
@click.option(
    "--start",
    "start_ms",
    type=int,
    default=None,
    help="Simulated clock start, epoch ms (batch mode default: 24 h ago).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write JSONL here instead of publishing to Kafka.",
)
@click.option(
    "--fade-seconds",
    type=float,
    default=14 * 86400.0,
    show_default=True,
    help="The fading cohort's rates fall to zero over this long.",
)
@click.option(
    "--fade-after",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds after --start at which the fading cohort starts to fade.",
)
def simulate(
    seed: int,
    users: int,
    count: int | None,
    rate: float | None,
    live: bool,
    catch_up_speed: float | None,
    activity: float,
    start_ms: int | None,
    out: Path | None,
    fade_seconds: float,
    fade_after: float,
) -> None:
    """Generate realistic engagement traffic (deterministic with --seed). In live mode, events
    stamped before now (a --start in the past) are a warm start: published at once, or at
    --catch-up-speed times real time in event-time order (what relayed activities need to
    arrive within the allowed lateness)."""
    from stream.tools.emit import EmitPlan, write_jsonl
    from stream.tools.simulate import Simulator

    now_ms = int(time.time() * 1000)
    if start_ms is None:
        start_ms = now_ms if live else now_ms - 86_400_000
    config = simulation_config(
        load_settings(), seed=seed, users=users, start_ms=start_ms, activity=activity,
        fade_seconds=fade_seconds, fade_after=fade_after,
    )  # fmt: skip
    sim = Simulator(config)
    plan = EmitPlan(
        count=count,
        rate=rate,
        live=live,
        stop_at_ms=None if live else now_ms,
        catch_up_speed=catch_up_speed if live else None,
    )
    if out is not None:
        n = write_jsonl(sim.events(), plan, out)
        console.print(f"wrote {n} events to {out}")
        return
    if count is None and not live:
        plan.stop_at_ms = now_ms
    asyncio.run(_publish_simulation(sim, plan))


def simulation_config(
    settings: Settings,
    *,
    seed: int,
    users: int,
    start_ms: int,
    activity: float,
    fade_seconds: float,
    fade_after: float,
) -> SimulationConfig:
    """What ``stream simulate`` simulates; sessions are spaced for the configured session
    timeout (the demo's 2-minute timeout lets users come back every 3 minutes, not 31)."""
    from stream.tools.simulate import SimulationConfig, session_gap_floor

    return SimulationConfig(
        seed=seed,
        users=users,
        start_ms=start_ms,
        activity=activity,
        fade_seconds=fade_seconds,
        fade_start_ms=start_ms + int(fade_after * 1000),
        session_gap_floor_seconds=session_gap_floor(settings.session_timeout_seconds),
    )


async def _publish_simulation(sim: Any, plan: Any) -> None:
    from stream.infra.runtime import with_infrastructure
    from stream.infra.topics import ensure_topics
    from stream.tools.emit import publish
    from stream.tools.publish import BatchPublisher

    settings, stack = with_infrastructure(load_settings())
    try:
        await ensure_topics(settings)
        async with BatchPublisher.from_settings(settings) as publisher:
            n = await publish(sim.events(), plan, publisher, settings.topics.by_family())
        console.print(f"published {n} events")
    finally:
        if stack is not None:
            stack.stop()


_MAP_HELP = (
    "CSV only: field[:type]=column pairs, e.g. event_id=id,type=kind,ts=time,user_id=uid,"
    "properties.page=url,properties.public:bool=is_public (types: str, int, float, bool)"
)


def _messages(path: Path, mapping: str | None) -> Iterator[bytes]:
    """The file's messages, or a usage error before anything runs: CSV needs a ``--map`` whose
    columns are all in the header; JSONL takes none."""
    from stream.tools.files import is_csv, iter_messages, parse_mapping

    if not is_csv(path):
        if mapping:
            raise click.BadParameter("only for .csv files", param_hint="--map")
        return iter_messages(path)
    if not mapping:
        raise click.BadParameter("a .csv file needs a column mapping", param_hint="--map")
    try:
        return iter_messages(path, parse_mapping(mapping))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--map") from None


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--map", "mapping", default=None, help=_MAP_HELP)
def replay(path: Path, mapping: str | None) -> None:
    """Publish a JSONL/CSV event file in file order, keeping each event's timestamp."""
    messages = _messages(path, mapping)
    started = time.perf_counter()
    n, publishing = asyncio.run(_replay(path, messages))
    overhead = time.perf_counter() - started - publishing
    console.print(
        f"replayed {n:,} events in {publishing:.2f}s, {n / max(publishing, 1e-9):,.0f} events/s"
        f" (to the last ack; +{overhead:.2f}s start/stop)",
        soft_wrap=True,
    )


async def _replay(path: Path, messages: Iterator[bytes]) -> tuple[int, float]:
    """Publish in file order; returns (messages sent, seconds from the first send to the last
    acknowledgement — the rate worth quoting, without the local stack's start-up).

    The event's own time travels in the message (``ts``), which is what the worker reads; the
    Kafka record timestamp stays the publish time, so retention of a replayed old file counts
    from now rather than deleting it at once."""
    from stream.infra.runtime import with_infrastructure
    from stream.infra.topics import ensure_topics
    from stream.tools.files import count_messages
    from stream.tools.publish import BatchPublisher
    from stream.tools.routing import Router

    settings, stack = with_infrastructure(load_settings())
    try:
        await ensure_topics(settings)
        router = Router(
            settings.topics.by_family(), settings.topics.clickstream, settings.segment_event_map
        )
        progress = Progress(
            TextColumn("replay"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,}"),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        with progress:
            task = progress.add_task("replay", total=count_messages(path))
            async with BatchPublisher.from_settings(settings) as publisher:
                route, send = router.route, publisher.send
                started = time.perf_counter()
                for n, message in enumerate(messages, 1):
                    topic, key = route(message)
                    await send(topic, key, message)
                    if n % 10_000 == 0:
                        progress.update(task, completed=n)
                await publisher.flush()
                elapsed = time.perf_counter() - started
                progress.update(task, completed=publisher.sent, total=publisher.sent)
                return publisher.sent, elapsed
    finally:
        if stack is not None:
            stack.stop()


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--map", "mapping", default=None, help=_MAP_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(path: Path, mapping: str | None, as_json: bool) -> None:
    """Validate an event file against the contract: counts per type and rejection reason."""
    from stream.config.wiring import build_decoder
    from stream.contract.decode import Rejection

    decoder = build_decoder(load_settings())
    messages = _messages(path, mapping)
    now_ms = int(time.time() * 1000)
    types: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for message in messages:
        outcome = decoder.decode(message, now_ms)
        if isinstance(outcome, Rejection):
            reasons[outcome.reason.value] += 1
        else:
            types[outcome.type] += 1
    if as_json:
        click.echo(orjson.dumps({"valid": dict(types), "rejected": dict(reasons)}).decode())
    else:
        table = Table("event type", "valid", title=f"{path.name}")
        for name, n in sorted(types.items()):
            table.add_row(name, f"{n:,}")
        table.add_row("[b]total valid[/b]", f"{sum(types.values()):,}")
        Console().print(table)
        if reasons:
            rej = Table("rejection reason", "messages")
            for name, n in sorted(reasons.items()):
                rej.add_row(name, f"{n:,}")
            Console().print(rej)
        click.echo("(late events depend on partition order and are decided by the worker)")
    if reasons:
        sys.exit(1)
