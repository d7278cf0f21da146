"""Commands that run the pipeline: ``worker``, ``demo``, ``bench`` and ``engine-profile``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from stream.cli.common import load_settings

__all__ = ["bench", "demo", "engine_profile", "worker"]


@click.command()
@click.option("--web-port", type=int, default=None, help="HTTP port (API, /metrics, health).")
def worker(web_port: int | None) -> None:
    """Run one worker (joins the consumer group; scale by starting more)."""
    from faust.worker import Worker

    from stream.infra.runtime import tune_gc, with_infrastructure
    from stream.service.app import build_app

    settings, stack = with_infrastructure(load_settings())
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


@click.command()
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
    run_demo(load_settings(), traffic, web_port=web_port)


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


@click.command("engine-profile")
@_simulated_workload(events=300_000)
@click.option(
    "--footprint", is_flag=True, help="Also the stored bytes per user by kind of key (slower)."
)
@click.option(
    "--redis-ops",
    is_flag=True,
    help="Also Redis's CPU per kind of operation: the run's applies replayed one kind at a time.",
)
@click.option(
    "--setup-only",
    is_flag=True,
    hidden=True,
    help="Everything but the batches: the baseline of deploy/local/count-instructions.sh.",
)
@_keyed_switches
def engine_profile(
    events: int,
    users: int,
    partitions: int,
    mix: str,
    seed: int,
    footprint: bool,
    redis_ops: bool,
    setup_only: bool,
    sessions: bool | None,
    score: bool | None,
) -> None:
    """µs per event of each engine phase (fold, keyed read, settle, build, apply), no Kafka."""
    from stream.tools.engine_profile import run

    result = run(
        load_settings().with_per_user_states(sessions=sessions, score=score),
        events=events,
        users=users,
        mix=mix,
        seed=seed,
        partitions=partitions,
        footprint=footprint,
        batches=not setup_only,
        redis_ops=redis_ops,
    )
    click.echo(result.report())


@click.command()
@_simulated_workload(events=1_000_000)
@click.option("--latency-seconds", default=20.0, show_default=True)
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
@click.option(
    "--redis-cluster",
    type=int,
    default=0,
    show_default=True,
    help="N > 0: run the store as a local Redis Cluster of N primaries (reports each one's CPU).",
)
@_keyed_switches
def bench(
    events: int,
    users: int,
    partitions: int,
    mix: str,
    latency_seconds: float,
    seed: int,
    json_out: Path | None,
    redis_cluster: int,
    sessions: bool | None,
    score: bool | None,
) -> None:
    """Throughput, latency and footprint of one worker process (not a test: prints figures)."""
    from dataclasses import asdict

    from stream.tools.bench import run_bench
    from stream.tools.bench_report import report

    result = asyncio.run(
        run_bench(
            load_settings().with_per_user_states(sessions=sessions, score=score),
            events=events,
            users=users,
            partitions=partitions,
            mix=mix,
            latency_seconds=latency_seconds,
            seed=seed,
            redis_cluster=redis_cluster,
        )
    )
    click.echo(report(result))
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(asdict(result)))
