"""A dashboard as the JSON model Grafana provisions: panels laid out left to right in rows of
24 columns, one query per target, the data source a template variable."""

from __future__ import annotations

from typing import Any

from stream.ops.grafana.panels import Dashboard, Panel, Variable

__all__ = ["ALL", "DATASOURCE", "render"]

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Regex of a multi-value variable's "All": any value, but the label must exist.
ALL = ".+"


def _variable(v: Variable) -> dict[str, Any]:
    base: dict[str, Any] = {"name": v.name, "label": v.label, "hide": 0, "skipUrlSync": False}
    if v.values:
        return {
            **base,
            "type": "custom",
            "query": ",".join(v.values),
            "multi": False,
            "includeAll": False,
            "current": {"selected": True, "text": v.default, "value": v.default},
            "options": [
                {"selected": value == v.default, "text": value, "value": value}
                for value in v.values
            ],
        }
    query = f"label_values({v.metric}, {v.label_name})"
    return {
        **base,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "sort": 1,
        "regex": "",
        "multi": True,
        "includeAll": True,
        "allValue": ALL,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
    }


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "targets": [
            {
                "datasource": DATASOURCE,
                "expr": t.expr,
                "legendFormat": t.legend or "__auto",
                "range": True,
                "refId": chr(ord("A") + i),
            }
            for i, t in enumerate(p.targets)
        ],
    }
    if p.kind == "stat":
        out["options"] = {
            "colorMode": "value",
            "graphMode": "area",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        }
    else:
        out["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return out


def render(d: Dashboard) -> dict[str, Any]:
    """The dashboard's Grafana JSON model (schema version 39, Grafana 10/11)."""
    panels: list[dict[str, Any]] = []
    y = 0
    pid = 1
    for row in d.rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid += 1
        y += 1
        x = 0
        line_height = 0
        for p in row.panels:
            if x + p.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel(p, pid, x, y))
            pid += 1
            x += p.width
            line_height = max(line_height, p.height)
        y += line_height
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": list(d.tags),
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "",
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"selected": True, "text": "Prometheus", "value": "prometheus"},
                    "hide": 0,
                    "options": [],
                    "refresh": 1,
                    "regex": "",
                },
                *(_variable(v) for v in d.variables),
            ]
        },
        "panels": panels,
    }
