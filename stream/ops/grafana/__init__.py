"""Grafana dashboards as data: a list of rows of panels per dashboard, rendered to the JSON that
Grafana provisions from ``deploy/grafana/dashboards/``.

Adding a panel is one entry in :data:`OVERVIEW` (``overview.py``) or :data:`PIPELINE`
(``pipeline.py``); then run ``python -m stream.ops.grafana`` and commit the JSON (a test fails
while the two differ, and the end-to-end test evaluates every expression against a real
Prometheus scraping a real worker, so a panel whose series does not exist cannot be merged).

PromQL conventions (docs/metrics.md): business gauges (``engagement_*``) are the same global view
on every worker, so they are aggregated with ``max``; operational series (``stream_*``) are per
worker and summed. Template variables only range over bounded label sets.

Must never: reference a series the code does not export.

Modules: ``panels`` (the building blocks), ``overview`` and ``pipeline`` (the two dashboards),
``render`` (their Grafana JSON); this one writes or checks the files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stream.ops.grafana.overview import OVERVIEW
from stream.ops.grafana.pipeline import PIPELINE
from stream.ops.grafana.render import render

__all__ = ["DASHBOARDS", "DEFAULT_OUT", "OVERVIEW", "PIPELINE", "files", "main", "render"]

#: Where the provisioned dashboards live in the repository (and in the Grafana container).
DEFAULT_OUT = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "dashboards"

DASHBOARDS = (OVERVIEW, PIPELINE)


def files() -> dict[str, str]:
    """File name -> JSON text, exactly as committed under ``deploy/grafana/dashboards/``."""
    return {f"{d.uid}.json": json.dumps(render(d), indent=2) + "\n" for d in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in files().items():
        path = args.out / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run python -m stream.ops.grafana", file=sys.stderr)
        return 1
    return 0
