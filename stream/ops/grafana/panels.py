"""The building blocks of the dashboards: panels, rows, template variables and a dashboard as
frozen data, and the helpers that spell the project's PromQL conventions (business gauges:
``max`` across workers; per-worker histograms: summed before the quantile)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RATE",
    "Dashboard",
    "Panel",
    "Row",
    "Target",
    "Variable",
    "business",
    "labels_of",
    "quantiles",
    "stat",
    "top",
]

#: The rate window of every ``rate()``: Grafana's own, from the scrape interval and the zoom.
RATE = "[$__rate_interval]"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"  # or "stat"
    width: int = 8
    height: int = 8


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A template variable: ``values`` (custom list) or ``metric`` + ``label`` (label_values)."""

    name: str
    label: str
    values: tuple[str, ...] = ()
    default: str = ""
    metric: str = ""
    label_name: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("engagement-stream",))


def labels_of(metric: str, label: str) -> Variable:
    """A multi-value variable over the values of ``label`` on ``metric`` (with "All")."""
    return Variable(label, label.capitalize(), metric=metric, label_name=label)


def top(metric: str, selector: str, by: str = "") -> str:
    """A business gauge across workers: ``max`` (``by`` the given labels)."""
    grouping = f" by ({by})" if by else ""
    return f"max{grouping} ({metric}{{{selector}}})"


def business(title: str, expr: str, legend: str = "", **kw: Any) -> Panel:
    """A business gauge: ``max`` across workers (each exports the same global view)."""
    return Panel(title, (Target(expr, legend),), **kw)


def stat(title: str, expr: str, unit: str = "short", description: str = "") -> Panel:
    return Panel(
        title, (Target(expr),), unit=unit, description=description, kind="stat", width=6, height=4
    )


def quantiles(title: str, metric: str, by: str = "", description: str = "", **kw: Any) -> Panel:
    """p50 and p99 of a per-worker histogram (summed across workers before the quantile)."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return Panel(
        title,
        tuple(
            Target(
                f"histogram_quantile({q}, sum by ({group}) "
                f'(rate({metric}_bucket{{job=~"$job"}}[$__rate_interval])))',
                f"p{int(q * 100)}{suffix}",
            )
            for q in (0.5, 0.99)
        ),
        unit="s",
        description=description,
        **kw,
    )
