"""``stream query``: the metrics, a customer's score and the at-risk list, read from the Redis
the workers write to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from stream.cli.common import load_settings
from stream.config.settings import Settings
from stream.engine.windows import QUERY_GRANULARITIES

__all__ = ["query"]


@click.command()
@click.argument("metric", required=False)
@click.option("--start", default=None, help="RFC 3339, YYYY-MM-DD or epoch seconds.")
@click.option("--end", default=None)
@click.option(
    "--granularity",
    type=click.Choice(QUERY_GRANULARITIES),
    default=None,
    help="Weeks (from week_start), months and quarters are unions of local days.",
)
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
    from stream.config.wiring import build_reader

    if not settings.redis_url:
        raise click.ClickException("set REDIS_URL to the Redis the workers write to")
    from stream.engine.store import stored_placement

    reader = build_reader(settings)
    try:
        found = await stored_placement(reader.client, reader.keys)
        if found not in (None, reader.keys.placement):
            # Reading another placement's key names would answer 0 everywhere, silently.
            raise click.ClickException(
                f"the store's keys use the {found} placement, this command is set to "
                f"{reader.keys.placement}: set STREAM_REDIS_PLACEMENT={found}"
            )
        yield reader
    finally:
        await reader.client.aclose()


async def _customers(user: str | None, limit: int, cursor: str | None) -> Any:
    from stream.config.wiring import score_rules
    from stream.metrics.score import read as score_read
    from stream.serving.query import SCORE_OFF, customer_report

    settings = load_settings()
    if not settings.score.enabled:
        raise click.ClickException(SCORE_OFF)
    async with _reader(settings) as reader:
        if user is not None:
            body = await customer_report(user, reader, score_rules(settings))
            if body is None:
                raise click.ClickException(f"unknown customer {user!r}")
            return body
        return await score_read.at_risk(reader, limit, cursor)


async def _query(metric: str, params: dict[str, str]) -> dict[str, Any]:
    from stream.config.wiring import build_windows, metric_options
    from stream.metrics.reader import QueryError
    from stream.serving.query import UnknownMetric, run_query

    settings = load_settings()
    async with _reader(settings) as reader:
        try:
            options = metric_options(settings)
            return await run_query(metric, params, reader, build_windows(settings), options)
        except UnknownMetric:
            raise click.ClickException(
                f"unknown metric {metric!r}; `stream query` lists them"
            ) from None
        except QueryError as exc:
            raise click.ClickException(str(exc)) from None
