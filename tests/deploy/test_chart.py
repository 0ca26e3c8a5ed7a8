"""The Helm chart: strict lint and render (Helm's own code, helm-python-sdk), schema rejections, every
manifest validated against several Kubernetes versions' schemas, and the rendered objects' shape."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.tools import ROOT, tool, tools_python

CHART = ROOT / "deploy" / "helm" / "lockgate"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
KUBE_VERSIONS = ["1.30.0", "1.32.0", "1.34.0"]


def helm(values: dict) -> dict:
    py = tools_python("helm_python")
    out = subprocess.run(
        [py, str(Path(__file__).with_name("helm_tool.py")), str(CHART), json.dumps(values)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def objects(values: dict) -> list[dict]:
    result = helm(values)
    assert "error" not in result, result["error"]
    assert result["lint"]["errors"] == [], result["lint"]
    docs = []
    for path, text in result["rendered"].items():
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def kind(docs: list[dict], name: str) -> list[dict]:
    return [d for d in docs if d["kind"] == name]


@pytest.fixture(scope="module", params=[None, *CI_VALUES], ids=["defaults", *[p.stem for p in CI_VALUES]])
def rendered(request, tmp_path_factory):
    values = yaml.safe_load(request.param.read_text()) if request.param else {}
    return values, objects(values)


def test_lint_and_render_are_clean(rendered):
    _, docs = rendered
    assert kind(docs, "ConfigMap") and (kind(docs, "Deployment") or kind(docs, "StatefulSet"))


def test_manifests_match_the_kubernetes_schemas(rendered, tmp_path):
    _, docs = rendered
    validate = tool("kubernetes-validate")
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    for version in KUBE_VERSIONS:
        out = subprocess.run([validate, "--strict", "-k", version, str(path)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"k8s {version}:\n{out.stdout}{out.stderr}"


def test_pod_security_probes_and_shutdown(rendered):
    values, docs = rendered
    (workload,) = kind(docs, "Deployment") + kind(docs, "StatefulSet")
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["startupProbe"]["httpGet"]["path"] == "/health/ready"
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(next(e["value"] for e in c["env"] if e["name"] == "LOCKGATE_DRAIN_SECONDS"))
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain
    assert workload["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/tmp", "/var/lib/lockgate", "/etc/lockgate"} <= mounts
    assert ":latest" not in c["image"]


def test_secrets_only_by_reference(rendered):
    values, docs = rendered
    assert not kind(docs, "Secret"), "the chart must not render secret values"
    (cm,) = kind(docs, "ConfigMap")
    config = yaml.safe_load(cm["data"]["lockgate.yaml"])
    assert config["auth"]["master_key"] == "${LOCKGATE_MASTER_KEY}"
    for d in docs:
        for spec in _pod_specs(d):
            for c in spec["containers"]:
                for e in c.get("env", []):
                    if e["name"] in ("LOCKGATE_MASTER_KEY", "LOCKGATE_DATABASE_URL", "OPENAI_API_KEY"):
                        assert "value" not in e and e["valueFrom"]["secretKeyRef"]["name"]


def _pod_specs(doc: dict):
    if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
        yield doc["spec"]["template"]["spec"]


def test_postgres_migrates_in_a_hook_job_before_the_rollout():
    docs = objects({})
    (job,) = kind(docs, "Job")
    assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["lockgate", "migrate"]
    env = {e["name"]: e for e in c["env"]}
    # The hook cannot see the release's ConfigMap at pre-install: the config travels inline.
    assert yaml.safe_load(env["LOCKGATE_CONFIG_YAML"]["value"])["models"]
    assert env["LOCKGATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "lockgate"
    (deploy,) = kind(docs, "Deployment")
    serve_env = {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert serve_env["LOCKGATE_MIGRATE_ON_START"] == "false"
    assert deploy["spec"]["replicas"] == 2 and kind(docs, "PodDisruptionBudget")


def test_sqlite_is_one_pod_with_a_volume():
    docs = objects({"storage": "sqlite", "replicaCount": 1})
    (sts,) = kind(docs, "StatefulSet")
    assert sts["spec"]["replicas"] == 1 and sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert not kind(docs, "Job") and not kind(docs, "Deployment")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"storage": "sqlite", "replicaCount": 2}, "replicaCount must be 1"),
        ({"storage": "sqlite", "replicaCount": 1, "autoscaling": {"enabled": True}}, "cannot autoscale"),
        ({"terminationGracePeriodSeconds": 10}, "at least preStopSeconds"),
        ({"replicaCount": 0}, "minimum"),
        ({"storage": "mysql"}, "storage"),
        ({"image": {"repository": "x", "tag": "latest"}}, "tag"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
        ({"secretEnv": [{"name": "X", "value": "plain"}]}, "secretEnv"),
    ],
)
def test_bad_values_are_refused(values, message):
    result = helm(values)
    assert "error" in result and message in result["error"], result.get("error")


def test_prometheus_rule_is_the_repo_alert_file():
    assert (CHART / "files" / "lockgate-alerts.yml").read_text() == (ROOT / "deploy/prometheus/lockgate-alerts.yml").read_text()
    docs = objects({"prometheusRule": {"enabled": True}})
    (rule,) = kind(docs, "PrometheusRule")
    assert rule["spec"]["groups"][0]["rules"]
