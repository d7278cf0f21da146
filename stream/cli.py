"""The ``stream`` command: worker, demo, simulate, replay, check, query, bench.

Each command is a thin shell over a module that does the work; configuration always comes from
:class:`~stream.config.settings.Settings` (environment / ``STREAM_CONFIG_FILE``), never from
globals.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream.config.settings import Settings

if TYPE_CHECKING:
    from stream.tools.simulate import SimulationConfig

console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError, missing config file, …
        raise click.ClickException(f"invalid configuration: {exc}") from exc


@click.group()
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def cli(log_level: str) -> None:
    """Real-time customer-engagement metrics: Kafka in, Redis windows, Prometheus out."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@cli.command()
@click.option("--web-port", type=int, default=None, help="HTTP port (API, /metrics, health).")
def worker(web_port: int | None) -> None:
    """Run one worker (joins the consumer group; scale by starting more)."""
    from faust.worker import Worker

    from stream.infra.runtime import tune_gc, with_infrastructure
    from stream.service.app import build_app

    settings, stack = with_infrastructure(_settings())
    if web_port is not None:
        settings = settings.with_overrides(web_port=web_port)
    application = build_app(settings)
    tune_gc()
    level = logging.getLevelName(logging.getLogger().level).lower()
    try:
        Worker(application.app, loglevel=level, quiet=True).execute_from_commandline()
    finally:
        if stack is not None:
            stack.stop()


@cli.command()
@click.option("--users", default=3000, show_default=True)
@click.option(
    "--activity",
    default=600.0,
    show_default=True,
    help="Simulated users are this many times more active than real ones.",
)
@click.option("--seed", default=7, show_default=True)
@click.option("--web-port", default=6066, show_default=True)
@click.option(
    "--fade-seconds",
    default=60.0,
    show_default=True,
    help="The fading cohort (10 % of users) stops coming back over this long; its customers "
    "cross into the at-risk band within minutes.",
)
def demo(users: int, activity: float, seed: int, web_port: int, fade_seconds: float) -> None:
    """Local broker + Redis + a worker + live simulated traffic, with a live table."""
    from stream.tools.demo import DemoTraffic, run_demo

    traffic = DemoTraffic(users=users, activity=activity, seed=seed, fade_seconds=fade_seconds)
    run_demo(_settings(), traffic, web_port=web_port)


@cli.command()
@click.option("--seed", default=42, show_default=True)
@click.option("--users", default=2000, show_default=True)
@click.option("--count", type=int, default=None, help="Stop after N events.")
@click.option("--rate", type=float, default=None, help="Max events/s (batch mode).")
@click.option("--live", is_flag=True, help="Stamp events with the wall clock, paced in real time.")
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
    activity: float,
    start_ms: int | None,
    out: Path | None,
    fade_seconds: float,
    fade_after: float,
) -> None:
    """Generate realistic engagement traffic (deterministic with --seed). In live mode, events
    stamped before now (a --start in the past) are published at once: a warm start."""
    from stream.tools.emit import EmitPlan, write_jsonl
    from stream.tools.simulate import Simulator

    now_ms = int(time.time() * 1000)
    if start_ms is None:
        start_ms = now_ms if live else now_ms - 86_400_000
    config = simulation_config(
        _settings(), seed=seed, users=users, start_ms=start_ms, activity=activity,
        fade_seconds=fade_seconds, fade_after=fade_after,
    )  # fmt: skip
    sim = Simulator(config)
    plan = EmitPlan(count=count, rate=rate, live=live, stop_at_ms=None if live else now_ms)
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

    settings, stack = with_infrastructure(_settings())
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


@cli.command()
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

    settings, stack = with_infrastructure(_settings())
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


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--map", "mapping", default=None, help=_MAP_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(path: Path, mapping: str | None, as_json: bool) -> None:
    """Validate an event file against the contract: counts per type and rejection reason."""
    from stream.config.wiring import build_decoder
    from stream.contract.decode import Rejection

    decoder = build_decoder(_settings())
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


@cli.command()
@click.argument("metric", required=False)
@click.option("--start", default=None, help="RFC 3339, YYYY-MM-DD or epoch seconds.")
@click.option("--end", default=None)
@click.option("--granularity", type=click.Choice(["minute", "hour", "day"]), default=None)
@click.option("--filter", "filters", multiple=True, help="dimension=value, repeatable.")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--customer", default=None, help="A customer's score, health, contributions, lifetime value."
)
@click.option("--at-risk", "at_risk", is_flag=True, help="Customers at risk, lowest score first.")
@click.option("--limit", default=50, show_default=True, help="With --at-risk: page size.")
@click.option("--cursor", default=None, help="With --at-risk: next_cursor of the last page.")
def query(
    metric: str | None,
    start: str | None,
    end: str | None,
    granularity: str | None,
    filters: tuple[str, ...],
    as_json: bool,
    customer: str | None,
    at_risk: bool,
    limit: int,
    cursor: str | None,
) -> None:
    """Print a metric's series (or, without METRIC, the list of metrics)."""
    from stream.serving.query import list_metrics

    if customer is not None or at_risk:
        click.echo(orjson.dumps(asyncio.run(_customers(customer, limit, cursor))).decode())
        return
    if metric is None:
        table = Table("metric", "unit", "granularities", "dimensions", "description")
        for m in list_metrics():
            table.add_row(
                m["name"],
                m["unit"],
                ",".join(m["granularities"]),
                ",".join(m["dimensions"]),
                m["description"],
            )
        Console().print(table)
        return
    params = {k: v for k, v in (("start", start), ("end", end), ("granularity", granularity)) if v}
    for item in filters:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected dimension=value", param_hint="--filter")
        params[name] = value
    body = asyncio.run(_query(metric, params))
    if as_json:
        click.echo(orjson.dumps(body).decode())
        return
    table = Table(
        "start",
        body["metric"],
        title=f"{body['metric']} per {body['granularity']} ({body['unit']})",
    )
    for point in body["points"]:
        value = point["value"]
        table.add_row(point["start"], "—" if value is None else f"{value:,.4g}")
    Console().print(table)


@asynccontextmanager
async def _reader(settings: Settings) -> AsyncIterator[Any]:
    """A read-side Reader on the Redis the workers write to (the CLI never starts a stack)."""
    from stream.engine import store
    from stream.engine.keys import Keys
    from stream.infra.connections import redis_target
    from stream.metrics.reader import Reader

    if not settings.redis_url:
        raise click.ClickException("set REDIS_URL to the Redis the workers write to")
    client = store.connect(redis_target(settings))
    try:
        yield Reader(client, Keys(settings.key_prefix))
    finally:
        await client.aclose()


async def _customers(user: str | None, limit: int, cursor: str | None) -> Any:
    from stream.config.wiring import score_rules
    from stream.metrics import customer_reader
    from stream.serving.query import SCORE_OFF, customer_report

    settings = _settings()
    if not settings.score.enabled:
        raise click.ClickException(SCORE_OFF)
    async with _reader(settings) as reader:
        if user is not None:
            body = await customer_report(user, reader, score_rules(settings))
            if body is None:
                raise click.ClickException(f"unknown customer {user!r}")
            return body
        return await customer_reader.at_risk(reader, limit, cursor)


async def _query(metric: str, params: dict[str, str]) -> dict[str, Any]:
    from stream.config.wiring import metric_options
    from stream.engine.windows import Windows
    from stream.metrics.reader import QueryError
    from stream.serving.query import UnknownMetric, run_query

    settings = _settings()
    async with _reader(settings) as reader:
        try:
            options = metric_options(settings)
            return await run_query(metric, params, reader, Windows(settings.zone), options)
        except UnknownMetric:
            raise click.ClickException(
                f"unknown metric {metric!r}; `stream query` lists them"
            ) from None
        except QueryError as exc:
            raise click.ClickException(str(exc)) from None


def _simulated_workload(events: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options that pick a simulated workload, shared by ``bench`` and ``engine-profile``
    (so the same flags give both the same events)."""

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            (
                click.option("--events", default=events, show_default=True),
                click.option("--users", default=20_000, show_default=True),
                click.option("--partitions", default=4, show_default=True),
                click.option(
                    "--mix",
                    type=click.Choice(["clickstream", "all"]),
                    default="clickstream",
                    show_default=True,
                ),
                click.option("--seed", default=1, show_default=True),
            )
        ):
            command = option(command)
        return command

    return apply


def _keyed_switches(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--[no-]sessions`` and ``--[no-]score``: measure with the per-user states on or off."""
    command = click.option(
        "--score/--no-score",
        default=None,
        help="Keep customer scores (default: the score.enabled setting).",
    )(command)
    return click.option(
        "--sessions/--no-sessions",
        default=None,
        help="Keep sessions (default: the sessions_enabled setting).",
    )(command)


@cli.command("engine-profile")
@_simulated_workload(events=300_000)
@_keyed_switches
def engine_profile(
    events: int,
    users: int,
    partitions: int,
    mix: str,
    seed: int,
    sessions: bool | None,
    score: bool | None,
) -> None:
    """µs per event of each engine phase (fold, keyed read, settle, build, apply), no Kafka."""
    from stream.tools.engine_profile import run

    result = run(
        _settings().with_per_user_states(sessions=sessions, score=score),
        events=events,
        users=users,
        mix=mix,
        seed=seed,
        partitions=partitions,
    )
    click.echo(result.report())


@cli.command()
@_simulated_workload(events=1_000_000)
@click.option("--latency-seconds", default=20.0, show_default=True)
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
@_keyed_switches
def bench(
    events: int,
    users: int,
    partitions: int,
    mix: str,
    latency_seconds: float,
    seed: int,
    json_out: Path | None,
    sessions: bool | None,
    score: bool | None,
) -> None:
    """Throughput, latency and footprint of one worker process (not a test: prints figures)."""
    from dataclasses import asdict

    from stream.tools.bench import report, run_bench

    result = asyncio.run(
        run_bench(
            _settings().with_per_user_states(sessions=sessions, score=score),
            events=events,
            users=users,
            partitions=partitions,
            mix=mix,
            latency_seconds=latency_seconds,
            seed=seed,
        )
    )
    click.echo(report(result))
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(asdict(result)))


def main() -> None:
    cli(prog_name="stream")


if __name__ == "__main__":
    main()
