"""What every ``stream`` command shares: the console its messages go to and the settings."""

from __future__ import annotations

import click
from rich.console import Console

from stream.config.settings import Settings

__all__ = ["console", "load_settings"]

console = Console(stderr=True)


def load_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError, missing config file, …
        raise click.ClickException(f"invalid configuration: {exc}") from exc
