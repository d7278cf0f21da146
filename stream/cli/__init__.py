"""The ``stream`` command: worker, demo, simulate, replay, check, query, bench, store.

Each command is a thin shell over a module that does the work; configuration always comes from
:class:`~stream.config.settings.Settings` (environment / ``STREAM_CONFIG_FILE``), never from
globals.

Commands, by concern: :mod:`~stream.cli.running` (``worker``, ``demo``, ``bench``,
``engine-profile``), :mod:`~stream.cli.data` (``simulate``, ``replay``, ``check``),
:mod:`~stream.cli.reading` (``query``), :mod:`~stream.cli.storage` (``store migrate``).
"""

from __future__ import annotations

import logging

import click

from stream.cli.data import check, replay, simulate, simulation_config
from stream.cli.reading import query
from stream.cli.running import bench, demo, engine_profile, worker
from stream.cli.storage import reset, store_group

__all__ = ["cli", "main", "simulation_config"]


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


cli.add_command(worker)
cli.add_command(demo)
cli.add_command(simulate)
cli.add_command(replay)
cli.add_command(check)
cli.add_command(query)
cli.add_command(engine_profile)
cli.add_command(bench)
cli.add_command(store_group)
cli.add_command(reset)


def main() -> None:
    cli(prog_name="stream")
