"""Prometheus configuration, rules and alert unit tests, checked by the real ``promtool``, and the
Alertmanager example by the real ``amtool`` (both installed by ``deploy/local/run.sh``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ops import (
    DEPLOY,
    LAG_EXPORTER,
    PROMETHEUS,
    ROOT,
    RULE_FILES,
    alerts,
    exporter_metrics,
    from_exporter,
    load_yaml,
    rules,
    series_in,
)

TEST_FILES = sorted((PROMETHEUS / "tests").glob("*_test.yml"))
LABEL_REF = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")
VALUE_REF = re.compile(r"\{\{\s*\$value\b[^}]*\}\}")
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/engagement-stream/engagement-stream/blob/main/docs/runbooks.md#"
#: Alerts whose value says nothing: absent() and the watchdog's vector() are 1, a refused
#: partition's flag is 1, a worker down's up is 0.
VALUELESS = {
    "EngagementStreamNoWorkers",
    "EngagementStreamLagExporterDown",
    "Watchdog",
    "EngagementStreamPartitionOffsetAhead",
    "EngagementStreamWorkerDown",
}
ALWAYS_FIRING = {"Watchdog"}


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


def shows_value(template: str) -> bool:
    return bool(VALUE_REF.search(template))


def with_annotations(spec: dict[str, Any]) -> dict[str, Any]:
    """The committed test file, with every expected alert's annotations rendered from the rules
    (those showing ``$value`` are written in the file) and the rule files made absolute (the
    result is run from a temporary directory)."""
    rules = alerts()
    spec = {**spec, "rule_files": [str(p) for p in RULE_FILES]}
    for case in spec["tests"]:
        for check in case.get("alert_rule_test", []):
            rule = rules[check["alertname"]]
            for expected in check.get("exp_alerts") or []:
                labels = {"alertname": check["alertname"], **expected.get("exp_labels", {})}
                written = expected.get("exp_annotations", {})
                notes = rule.get("annotations", {})
                missing = [k for k, v in notes.items() if shows_value(v) and k not in written]
                assert not missing, f"{case['name']}: write out {missing} (they show $value)"
                expected["exp_annotations"] = {
                    k: written[k] if shows_value(v) else render(v, labels) for k, v in notes.items()
                }
    return spec


def test_rules_and_config_pass_promtool_check() -> None:
    result = run("promtool", "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run("promtool", "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def runbook_sections() -> dict[str, str]:
    """GitHub anchor -> text of every ``## `` section of docs/runbooks.md."""
    parts = re.split(r"^## (.+)$", RUNBOOKS.read_text(), flags=re.M)[1:]
    return {
        re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-"): body
        for title, body in zip(parts[::2], parts[1::2], strict=True)
    }


def test_every_alert_has_a_runbook_section_a_value_and_no_per_user_labels() -> None:
    sections = runbook_sections()
    for name, rule in alerts().items():
        notes = rule.get("annotations", {})
        assert {"summary", "description", "runbook_url"} <= set(notes), name
        url = notes["runbook_url"]
        assert url == RUNBOOK_BASE + name.lower(), f"{name}: {url}"
        assert len(sections.get(name.lower(), "")) > 200, f"{name}: no runbook section"
        assert shows_value(notes["description"]) != (name in VALUELESS), name
        assert "severity" in rule.get("labels", {}), name
        assert "for" in rule or name in ALWAYS_FIRING, f"{name} would flap without a `for:`"
        assert "user" not in rule["expr"], name
    alert_like = {a for a in sections if a.startswith("engagementstream")}
    assert alert_like <= {n.lower() for n in alerts()}, "a runbook section without its alert"


def test_selectors_are_written_once() -> None:
    """The scrape job and the consumer group appear in the selectors group only."""
    groups = [g for path in RULE_FILES for g in load_yaml(path)["groups"]]
    for group in groups:
        for rule in group["rules"]:
            selects = re.search(r"\b(job|group_id)\s*=~?\s*\"", rule["expr"])
            if group["name"] == "engagement-stream.selectors":
                assert selects, f"{rule['record']} selects nothing"
            else:
                assert not selects, f"{rule.get('record') or rule.get('alert')}: {selects}"


def test_every_recording_rule_has_an_expression_test() -> None:
    tested = " ".join(
        check["expr"] for case in all_cases() for check in case.get("promql_expr_test", [])
    )
    untested = [r["record"] for r in rules() if "record" in r and r["record"] not in tested]
    assert not untested, untested


def all_cases() -> list[dict[str, Any]]:
    return [case for path in TEST_FILES for case in load_yaml(path)["tests"]]


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_groups_are_evaluated_in_file_order(path: Path) -> None:
    """Every group, in the order of the case's rule files: recording before alerts.

    promtool evaluates groups missing from `group_eval_order` in a random order, so an alert
    would sometimes see the previous step's recorded value and its {{ $value }} would flake.
    """
    spec = load_yaml(path)
    files = [path.parent / name for name in spec["rule_files"]]
    assert {f.resolve() for f in files} == {f.resolve() for f in RULE_FILES}
    in_order = [group["name"] for f in files for group in load_yaml(f)["groups"]]
    assert spec.get("group_eval_order") == in_order


@pytest.mark.slow  # promtool evaluates every test file's series: ~20 s
@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_alert_unit_tests_pass(path: Path, tmp_path: Path) -> None:
    spec = with_annotations(load_yaml(path))
    rendered = tmp_path / path.name
    rendered.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = run("promtool", "test", "rules", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_resolving() -> None:
    """Each alert has a case where it fires and, later in the same case, is quiet again."""
    resolved: set[str] = set()
    fired: set[str] = set()
    for case in all_cases():
        fired_at: dict[str, float] = {}
        checks = case.get("alert_rule_test", [])
        for check in sorted(checks, key=lambda c: _seconds(c["eval_time"])):
            name, t = check["alertname"], _seconds(check["eval_time"])
            if check.get("exp_alerts"):
                fired_at.setdefault(name, t)
                fired.add(name)
            elif name in fired_at:
                resolved.add(name)
    assert fired == set(alerts()), set(alerts()) ^ fired
    assert resolved == set(alerts()) - ALWAYS_FIRING, set(alerts()) ^ resolved
    names = [case["name"] for case in all_cases()]
    for required in (
        "slow rise does not fire",
        "low volume does not fire",
        "day after a spike still fires",
    ):
        assert any(required in n for n in names), required


def _seconds(duration: str) -> float:
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return float(sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([dhms])", duration)))


def test_churn_spike_rule_uses_the_transition_counter_and_a_baseline() -> None:
    rule = alerts()["ChurnRiskSpike"]
    assert "rate30m_baseline" in rule["expr"] and "* 1800 >=" in rule["expr"]
    recording = (PROMETHEUS / "rules" / "recording.yml").read_text()
    assert "stream_churn_risk_transitions_total" in recording
    baseline = next(r["expr"] for r in rules() if r.get("record", "").endswith("rate30m_baseline"))
    assert "quantile by (job) (0.5," in baseline  # a median: one bad day cannot raise it
    assert all(f"offset {d}d" in baseline for d in range(1, 8))


@pytest.mark.parametrize("path", [DEPLOY / "alertmanager" / "alertmanager.yml"])
def test_alertmanager_config_passes_amtool(path: Path) -> None:
    result = run("amtool", "check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    routes = yaml.safe_load(path.read_text())["route"]
    assert any("ChurnRiskSpike" in str(r.get("matchers", "")) for r in routes.get("routes", [])), (
        "churn-risk alerts need their own route"
    )


def test_lag_exporter_series_and_labels_exist_in_its_release() -> None:
    """Every kminion series a rule reads, and every label a rule selects or groups it by, is
    exported by the release the compose file runs (the list is vendored from its source)."""
    known = exporter_metrics()
    vendored = json.loads(LAG_EXPORTER.read_text())["image"]
    assert load_yaml(ROOT / "docker-compose.yml")["services"]["kminion"]["image"] == vendored
    used = set()
    for rule in rules():
        expr = rule["expr"]
        for name in from_exporter(set(series_in(expr))):
            assert name in known, f"{name} is not a kminion series"
            used.add(name)
            selected = re.findall(re.escape(name) + r"\{([^}]*)\}", expr)
            grouped = re.findall(r"\bby \(([^)]*)\) \(\w*\(?" + re.escape(name), expr)
            labels = re.findall(r"(\w+)\s*=", ",".join(selected)) + [
                x.strip() for clause in grouped for x in clause.split(",")
            ]
            assert set(labels) <= set(known[name]), f"{name}: {labels} not in {known[name]}"
    assert len(used) >= 4
