"""The committed Grafana dashboards are exactly what ``stream.ops.grafana`` generates, and follow
the project's PromQL rules (business gauges: max; operational series: sum; bounded variables)."""

from __future__ import annotations

import re
from pathlib import Path

from stream.ops import grafana
from tests.support.ops import DASHBOARDS, dashboards, panel_exprs


def test_committed_json_equals_generator_output() -> None:
    generated = grafana.files()
    committed = {p.name: p.read_text() for p in DASHBOARDS}
    assert committed == generated, "stale dashboards: run `python -m stream.ops.grafana`"


def test_business_gauges_use_max_and_no_per_user_labels() -> None:
    for board in dashboards():
        for title, expr in panel_exprs(board):
            if "engagement_" in expr:
                assert re.search(r"\bsum\b", expr) is None, f"{title}: sum of a business gauge"
                assert "max" in expr, f"{title}: business gauges need max across workers"
            assert re.search(r"\buser(_id)?\b", expr) is None, f"{title}: per-user label"


def test_panels_have_unique_ids_and_every_variable_is_used() -> None:
    for board in dashboards():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        exprs = " ".join(e for _, e in panel_exprs(board))
        for var in board["templating"]["list"]:
            if var["type"] != "datasource":
                assert f"${var['name']}" in exprs, f"{board['uid']}: ${var['name']} unused"
        assert {t["datasource"]["uid"] for p in board["panels"] for t in p.get("targets", [])} == {
            "${datasource}"
        }


def test_main_check_mode_reports_stale_files(tmp_path: Path) -> None:
    assert grafana.main(["--out", str(tmp_path), "--check"]) == 1
    assert grafana.main(["--out", str(tmp_path)]) == 0
    assert grafana.main(["--out", str(tmp_path), "--check"]) == 0
