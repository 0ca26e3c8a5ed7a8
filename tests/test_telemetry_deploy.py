"""deploy/: the alert rules pass promtool (syntax and unit tests); the dashboard only uses metrics we export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from lockgate.telemetry import metrics
from tests.harness import missing

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS = DEPLOY / "prometheus"


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        missing("promtool is not installed", "apt-get install -y prometheus")
    return tool


def test_alert_rules_are_valid() -> None:
    rules = sorted(str(p) for p in PROMETHEUS.glob("*.yml") if not p.name.endswith(".test.yml"))
    assert rules
    out = subprocess.run([_promtool(), "check", "rules", *rules], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_rule_unit_tests_pass() -> None:
    tests = sorted(str(p) for p in PROMETHEUS.glob("*.test.yml"))
    assert tests
    out = subprocess.run([_promtool(), "test", "rules", *tests], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS)
    assert out.returncode == 0, out.stdout + out.stderr


def _exported_names() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        describe = getattr(value, "describe", None)
        if callable(describe) and hasattr(value, "_name"):
            for family in describe():
                for suffix in ("", "_total", "_bucket", "_count", "_sum"):
                    names.add(family.name + suffix)
    return names


def test_dashboard_and_rules_only_use_exported_metrics() -> None:
    exported = _exported_names()
    dashboard = json.loads((DEPLOY / "grafana" / "lockgate-dashboard.json").read_text())
    assert dashboard["panels"] and all(p["targets"] for p in dashboard["panels"])
    text = json.dumps(dashboard) + "".join(p.read_text() for p in PROMETHEUS.glob("*.yml") if not p.name.endswith(".test.yml"))
    used = set(re.findall(r"\blockgate_[a-z_]+", text))
    assert used and used <= exported, used - exported


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "lockgate-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if t.get("expr")]


def _as_promql(expr: str) -> str:
    # Grafana's variables, replaced by what Grafana would send, so the query itself is what is checked.
    return expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$model", ".*")


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel's query, written as a recording rule (it has no other offline parser)."""
    queries = _dashboard_queries()
    assert queries
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": _as_promql(q)} for i, q in enumerate(queries)]}
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    out = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(queries)} rules found" in out.stdout, out.stdout
