"""The Prometheus alert rules (deploy/prometheus/alerts.yml) and the Grafana dashboard
(deploy/grafana/voicefleet.json): promtool checks and unit-tests the rules, parses every dashboard
query, and every metric either names is one the control plane's /metrics exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_support import DEPLOY, tool

from control_plane.core.config import Settings
from control_plane.metrics import LATENCY_BUCKETS, Metrics

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = Path(__file__).with_name("alerts_test.yml")
DASHBOARD = DEPLOY / "grafana" / "voicefleet.json"
REQUIRED_ALERTS = {"VoicefleetDeviceOffline", "VoicefleetQueueGrowing", "VoicefleetErrorRate",
                   "VoicefleetFirstChunkSlow", "VoicefleetRolloutHalted", "VoicefleetLeaderless"}
# Series Prometheus makes itself for every target.
PROMETHEUS_OWN = {"up"}
# What the rules need and /metrics does not export yet.
NOT_YET_EXPORTED: set[str] = set()
SAMPLE_SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}


def exported() -> set[str]:
    """The sample names /metrics can carry, from the control plane's own registry (labelled series
    appear only once observed, so the names come from each family's type, not from a scrape)."""
    metrics = Metrics(lambda: {"jobs_by_state": {}, "devices": [], "rollouts_halted": 0})
    return {family.name + suffix for family in metrics.registry.collect()
            for suffix in SAMPLE_SUFFIXES[family.type]}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers followed by a selector, range or the end,
    less functions, keywords and label names."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # ranges, Grafana's $__rate_interval included
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr))
    return {w for w in words if w not in {"and", "or", "unless", "offset", "bool", "le", "inf", "Inf"}
            and not re.fullmatch(r"\d+[smhdwy]", w)}


def test_promtool_checks_the_rules():
    out = promtool("check", "rules", str(ALERTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(REQUIRED_ALERTS)} rules found" in out.stdout


def test_promtool_unit_tests_fire_each_alert_and_only_then():
    out = promtool("test", "rules", str(ALERTS_TEST))
    assert out.returncode == 0, out.stdout + out.stderr
    tested = set(re.findall(r"alertname:\s*(\w+)", ALERTS_TEST.read_text()))
    assert tested == REQUIRED_ALERTS


def test_the_alerts_are_there():
    assert {rule["alert"] for rule in alert_rules()} == REQUIRED_ALERTS


def test_rules_and_dashboard_use_exported_metrics():
    known = exported() | PROMETHEUS_OWN
    assert "voicefleet_queue_depth" in known and "voicefleet_job_first_chunk_seconds_bucket" in known
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= known | NOT_YET_EXPORTED, f"{rule['alert']}: {names - known - NOT_YET_EXPORTED}"
    for expr in dashboard_queries():
        assert metric_names(expr) <= known, f"dashboard: {metric_names(expr) - known} in {expr}"
    # once /metrics exports one of these, move it out of NOT_YET_EXPORTED
    assert not NOT_YET_EXPORTED & known


def test_metric_name_extraction_sees_through_promql():
    """The check above is only as good as this parser."""
    expr = ('histogram_quantile(0.99, sum by (le) (rate(voicefleet_x_bucket{le="+Inf",state="a b"}[$__rate_interval])))'
            ' > 1 and on (device) max(voicefleet_y offset 1h) unless voicefleet_z')
    assert metric_names(expr) == {"voicefleet_x_bucket", "voicefleet_y", "voicefleet_z"}


def test_alert_thresholds_match_the_console_alarms_and_buckets():
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    settings = Settings()
    assert re.search(rf"> {settings.alarm_error_rate:.2f}\b", rules["VoicefleetErrorRate"])
    assert re.search(rf">= {settings.alarm_error_min_jobs}\b", rules["VoicefleetErrorRate"])
    budget = float(re.search(r"\)\s*>\s*([\d.]+)\s*$", rules["VoicefleetFirstChunkSlow"].strip()).group(1))
    assert budget in LATENCY_BUCKETS  # a bucket bound: the quantile is exact at the budget


def test_promtool_parses_every_dashboard_query(tmp_path):
    """Each panel's query as a recording rule, so promtool's parser reads it ($__rate_interval is
    Grafana's; Prometheus sees a duration there)."""
    queries = dashboard_queries()
    rules = [{"record": f"dashboard:query{i}", "expr": q.replace("$__rate_interval", "5m")}
             for i, q in enumerate(queries)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = promtool("check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(queries)} rules found" in out.stdout


def test_dashboard_panels_are_well_formed():
    dash = json.loads(DASHBOARD.read_text())
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert [v["name"] for v in dash["templating"]["list"] if v["type"] == "datasource"] == ["datasource"]
    for p in (p for p in panels if p["type"] != "row"):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, p["title"]


@pytest.mark.parametrize("bad", ["voicefleet_queue_depht", "max(voicefleet_jobs_finished)"])
def test_a_misspelt_metric_is_caught(bad):
    assert not metric_names(bad) <= exported()
