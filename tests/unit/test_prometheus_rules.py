"""Prometheus configuration, rules and alert unit tests, checked by the real ``promtool``, and the
Alertmanager example by the real ``amtool`` (both installed by ``deploy/local/run.sh``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ops import DEPLOY, PROMETHEUS, RULE_FILES, alerts, load_yaml

TEST_FILE = PROMETHEUS / "tests" / "alerts_test.yml"
LABEL_REF = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(argv[0])
    assert binary, f"{argv[0]} not found: run `bash deploy/local/run.sh setup`"
    return subprocess.run(
        [binary, *argv[1:]], capture_output=True, text=True, timeout=180, check=False
    )


def render(template: str, labels: dict[str, str]) -> str:
    """The subset of Go templating the annotations use: ``{{ $labels.name }}``."""
    assert "{{" not in LABEL_REF.sub("", template), f"unsupported template in {template!r}"
    return LABEL_REF.sub(lambda m: labels.get(m.group(1), ""), template)


def with_annotations(spec: dict[str, Any]) -> dict[str, Any]:
    """The committed test file, with every expected alert's annotations rendered from the rules
    and the rule files made absolute (the result is run from a temporary directory)."""
    rules = alerts()
    spec = {**spec, "rule_files": [str(p) for p in RULE_FILES]}
    for case in spec["tests"]:
        for check in case.get("alert_rule_test", []):
            rule = rules[check["alertname"]]
            for expected in check.get("exp_alerts") or []:
                labels = {"alertname": check["alertname"], **expected.get("exp_labels", {})}
                expected["exp_annotations"] = {
                    k: render(v, labels) for k, v in rule.get("annotations", {}).items()
                }
    return spec


def test_rules_and_config_pass_promtool_check() -> None:
    result = run("promtool", "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run("promtool", "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_runbook_and_no_per_user_labels() -> None:
    for name, rule in alerts().items():
        notes = rule.get("annotations", {})
        assert {"summary", "description", "runbook"} <= set(notes), name
        assert len(notes["runbook"]) > 80, f"{name}: runbook too thin"
        assert "severity" in rule.get("labels", {}), name
        assert "for" in rule, f"{name} would flap without a `for:`"
        assert "user" not in rule["expr"], name


def test_alert_unit_tests_pass(tmp_path: Path) -> None:
    spec = with_annotations(load_yaml(TEST_FILE))
    rendered = tmp_path / "alerts_test.yml"
    rendered.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = run("promtool", "test", "rules", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_resolving() -> None:
    """Each alert has a case where it fires and, later in the same case, is quiet again."""
    spec = load_yaml(TEST_FILE)
    resolved: set[str] = set()
    fired: set[str] = set()
    for case in spec["tests"]:
        fired_at: dict[str, float] = {}
        for check in sorted(case["alert_rule_test"], key=lambda c: _seconds(c["eval_time"])):
            name, t = check["alertname"], _seconds(check["eval_time"])
            if check.get("exp_alerts"):
                fired_at.setdefault(name, t)
                fired.add(name)
            elif name in fired_at:
                resolved.add(name)
    assert fired == set(alerts()), set(alerts()) ^ fired
    assert resolved == set(alerts()), set(alerts()) ^ resolved
    names = [case["name"] for case in spec["tests"]]
    for required in ("slow rise does not fire", "low volume does not fire"):
        assert any(required in n for n in names), required


def _seconds(duration: str) -> float:
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return float(sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([dhms])", duration)))


def test_churn_spike_rule_uses_the_transition_counter_and_a_baseline() -> None:
    rule = alerts()["ChurnRiskSpike"]
    assert "rate30m_baseline" in rule["expr"] and "* 1800 >=" in rule["expr"]
    recording = (PROMETHEUS / "rules" / "recording.yml").read_text()
    assert "stream_churn_risk_transitions_total" in recording
    assert "offset 1d" in recording and "offset 1w" in recording


@pytest.mark.parametrize("path", [DEPLOY / "alertmanager" / "alertmanager.yml"])
def test_alertmanager_config_passes_amtool(path: Path) -> None:
    result = run("amtool", "check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    routes = yaml.safe_load(path.read_text())["route"]
    assert any("ChurnRiskSpike" in str(r.get("matchers", "")) for r in routes.get("routes", [])), (
        "churn-risk alerts need their own route"
    )
