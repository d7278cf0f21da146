"""Paths and loaders of the operations artefacts under ``deploy/`` (shared by the ops tests)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
TOOLS_BIN = ROOT / ".venv-tools" / "bin"

#: Recording rules that compare with the same window on earlier days (``offset``): a test run
#: has no such history, so the e2e test only requires them to evaluate.
NEEDS_HISTORY = frozenset({"job:stream_churn_risk_transitions:rate30m_baseline"})
#: The lag exporter's series, as its release exports them (a Go binary: not run by the tests).
LAG_EXPORTER = PROMETHEUS / "exporters" / "kminion-v2.3.5.json"
EXPORTER_PREFIX = "kminion_"

_METRIC = re.compile(
    r"\b(?:[a-z_]+:)?(?:stream|engagement|kminion)_[a-z0-9_]+(?::[a-z0-9_]+)?\b|\bup\b"
)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    """Every recording and alerting rule, in file order."""
    return [
        rule
        for path in RULE_FILES
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in rules() if "alert" in r}


def recorded_from() -> dict[str, set[str]]:
    """Recording rule name -> the raw series it is (transitively) computed from."""
    direct = {r["record"]: set(series_in(r["expr"])) for r in rules() if "record" in r}

    def expand(names: set[str]) -> set[str]:
        out: set[str] = set()
        for name in names:
            out |= expand(direct[name]) if name in direct else {name}
        return out

    return {name: expand(names) for name, names in direct.items()}


def series_in(expr: str) -> list[str]:
    """Metric names (raw series and recording rules) an expression selects."""
    return sorted(set(_METRIC.findall(expr)))


def raw_series(expr: str) -> set[str]:
    derived = recorded_from()
    out: set[str] = set()
    for name in series_in(expr):
        out |= derived.get(name, {name})
    return out


def exporter_metrics() -> dict[str, list[str]]:
    """kminion series name -> its labels."""
    metrics: dict[str, list[str]] = json.loads(LAG_EXPORTER.read_text())["metrics"]
    return metrics


def from_exporter(names: set[str]) -> set[str]:
    return {n for n in names if n.startswith(EXPORTER_PREFIX)}


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in DASHBOARDS]


def panel_exprs(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def tool(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a schema checker from the tools virtualenv that ``deploy/local/run.sh setup`` makes."""
    path = TOOLS_BIN / name
    assert path.exists(), f"{path} missing: run `bash deploy/local/run.sh setup`"
    return subprocess.run(
        [str(path), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
