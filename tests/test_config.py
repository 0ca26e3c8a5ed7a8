"""Configuration: interpolation, validation errors that name the place, the embedded default, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from lockgate import __version__
from lockgate.config import (
    DEV_MASTER_KEY,
    AnthropicDeployment,
    ConfigError,
    MockDeployment,
    OpenAIDeployment,
    default_config,
    load_config,
    parse_config,
)
from tests.harness import ROOT, GatewayProcess

ISSUE_EXAMPLE = """
auth:
  master_key: ${LOCKGATE_MASTER_KEY}
models:
  - name: gpt-4o-mini
    deployments:
      - provider: openai
        model: gpt-4o-mini
        api_base: https://api.openai.com/v1
        api_key: ${OPENAI_API_KEY}
        timeout_s: 600
"""


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "lockgate.yaml"
    path.write_text(ISSUE_EXAMPLE)
    config = load_config(path, env={"LOCKGATE_MASTER_KEY": "sk-m", "OPENAI_API_KEY": "sk-o"})
    dep = config.models[0].deployments[0]
    assert config.auth.master_key.get_secret_value() == "sk-m"
    assert dep.api_key.get_secret_value() == "sk-o" and dep.timeout_s == 600
    assert "sk-o" not in repr(config)


def test_interpolation_defaults_and_missing_variables() -> None:
    data = {"models": [{"name": "${NAME:-fallback}", "deployments": [{"provider": "mock", "model": "m-${SUFFIX}"}]}]}
    config = parse_config(data, env={"SUFFIX": "x"})
    assert config.models[0].name == "fallback" and config.models[0].deployments[0].model == "m-x"
    with pytest.raises(ConfigError, match=r"models\[0\]\.deployments\[0\]\.model: environment variable SUFFIX is not set"):
        parse_config(data, env={})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"models": [{"name": "a", "deployments": [{"provider": "openia", "model": "x"}]}]},
            r"models\[0\]\.deployments\[0\]\.provider",
        ),
        (
            {"models": [{"name": "a", "deployments": [{"provider": "mock", "model": "x", "timout_s": 3}]}]},
            r"models\[0\]\.deployments\[0\]\.timout_s: unknown field",
        ),
        ({"models": [{"name": "a", "deployments": []}]}, r"models\[0\]\.deployments"),
        ({"models": []}, r"^models"),
        (
            {"models": [{"name": "a", "deployments": [{"provider": "mock", "model": "x"}]}], "server": {"port": "http"}},
            r"server\.port",
        ),
        (
            {"models": [{"name": "a", "fallbacks": ["b"], "deployments": [{"provider": "mock", "model": "x"}]}]},
            "unknown model 'b'",
        ),
        ({"models": [{"name": "a", "deployments": [{"provider": "mock", "model": "x"}]}] * 2}, "repeated: a"),
    ],
)
def test_validation_errors_name_the_field_and_place(data, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data, env={})


# Fields that belong to one provider: on a deployment of another, each is an unknown field (a union on `provider`).
ANTHROPIC_ONLY = {"anthropic_version": "2023-06-01", "anthropic_beta": "b-1", "max_tokens_default": 512}
MOCK_ONLY = {"mock_response": "hi", "mock_latency_ms": 5, "mock_tokens_per_s": 10, "mock_embedding_dims": 8}
OPENAI_ONLY = {"stream_usage": False}
WRONG_FIELDS = (
    [("openai", f, v) for f, v in {**ANTHROPIC_ONLY, **MOCK_ONLY}.items()]
    + [("anthropic", f, v) for f, v in {**MOCK_ONLY, **OPENAI_ONLY}.items()]
    + [("mock", f, v) for f, v in {**ANTHROPIC_ONLY, **OPENAI_ONLY}.items()]
)


def _one(dep: dict[str, object], index: int = 0) -> dict[str, object]:
    others = [{"provider": "mock", "model": "ok"}] * index
    return {"models": [{"name": "a", "deployments": [*others, dep]}]}


@pytest.mark.parametrize(("provider", "field", "value"), WRONG_FIELDS)
def test_a_field_of_another_provider_is_an_unknown_field(provider: str, field: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_one({"provider": provider, "model": "x", field: value}), env={})
    # The one line, at the deployment's own place (not the union's tag), like any unknown key.
    assert str(err.value) == f"models[0].deployments[0].{field}: unknown field"


def test_each_provider_takes_its_own_fields_and_the_common_ones() -> None:
    common = {"model": "x", "id": "d", "api_base": "http://127.0.0.1:9/v1", "timeout_s": 5, "weight": 2, "input_cost_per_mtok": 1}
    deps = [
        {"provider": "openai", **common, **OPENAI_ONLY},
        {"provider": "anthropic", **common, **ANTHROPIC_ONLY},
        {"provider": "mock", **common, **MOCK_ONLY},
    ]
    got = parse_config({"models": [{"name": "a", "deployments": deps}]}, env={}).models[0].deployments
    assert [type(d) for d in got] == [OpenAIDeployment, AnthropicDeployment, MockDeployment]
    assert isinstance(got[0], OpenAIDeployment) and got[0].stream_usage is False
    assert isinstance(got[1], AnthropicDeployment) and (got[1].anthropic_beta, got[1].max_tokens_default) == ("b-1", 512)
    assert isinstance(got[2], MockDeployment) and (got[2].mock_response, got[2].mock_latency_ms) == ("hi", 5)
    assert all(d.timeout_s == 5 and d.weight == 2 and d.input_cost_per_mtok == 1 for d in got)


def test_the_provider_tag_errors_name_the_provider_field() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_one({"provider": "openia", "model": "x"}, index=1), env={})
    assert str(err.value) == "models[0].deployments[1].provider: Input should be 'openai', 'anthropic' or 'mock'"
    with pytest.raises(ConfigError) as err:
        parse_config(_one({"model": "x"}), env={})
    assert str(err.value) == "models[0].deployments[0].provider: Field required"
    # Several errors in one deployment: every one at its place, the tag never in the path.
    with pytest.raises(ConfigError) as err:
        parse_config(_one({"provider": "openai", "model": "x", "mock_latency_ms": 1, "timeout_s": -1}), env={})
    assert sorted(str(err.value).splitlines()) == [
        "models[0].deployments[0].mock_latency_ms: unknown field",
        "models[0].deployments[0].timeout_s: Input should be greater than 0",
    ]


def test_check_config_reports_a_field_of_another_provider(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_one({"provider": "openai", "model": "m", "anthropic_beta": "b"})))
    out = _cli("check-config", str(bad))
    assert out.returncode == 1 and "models[0].deployments[0].anthropic_beta: unknown field" in out.stderr


def test_embedded_default_is_mock_without_keys_and_openai_with_one() -> None:
    offline = default_config(env={})
    assert [m.name for m in offline.models] == ["mock-gpt", "mock-embedding"]
    assert offline.auth.master_key.get_secret_value() == DEV_MASTER_KEY
    online = default_config(
        env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "LOCKGATE_MASTER_KEY": "sk-mine"}
    )
    assert "gpt-4o-mini" in [m.name for m in online.models]
    assert online.models[0].deployments[0].api_base == "http://127.0.0.1:9/v1"
    assert online.auth.master_key.get_secret_value() == "sk-mine"


def _cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "lockgate", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=60,
    )


def test_cli_version_and_check_config(tmp_path: Path) -> None:
    assert _cli("--version").stdout.strip() == f"lockgate {__version__}"
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"models": [{"name": "demo", "deployments": [{"provider": "mock", "model": "m"}]}]}))
    out = _cli("check-config", str(good))
    assert out.returncode == 0 and "demo" in out.stdout and "mock/m#0" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"models": [{"name": "demo", "deployments": [{"provider": "nope", "model": "m"}]}]}))
    out = _cli("check-config", str(bad))
    assert out.returncode == 1 and "models[0].deployments[0].provider" in out.stderr
    out = _cli("serve", "--config", str(bad))
    assert out.returncode == 2 and "models[0].deployments[0].provider" in out.stderr


def test_serve_refuses_the_development_key_off_loopback(tmp_path: Path) -> None:
    out = _cli("serve", "--host", "0.0.0.0", cwd=tmp_path, env={"LOCKGATE_MASTER_KEY": "", "OPENAI_API_KEY": ""})
    assert out.returncode == 2 and "LOCKGATE_MASTER_KEY" in out.stderr


def test_serve_without_config_works_offline_with_the_mock(tmp_path: Path) -> None:
    gw = GatewayProcess(
        {}, tmp_path, env={"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "", "LOCKGATE_CONFIG": "", "LOCKGATE_MASTER_KEY": ""}
    )
    gw.config_path = None  # type: ignore[assignment]
    import os
    import time

    log = open(gw.log_path, "ab")
    gw.proc = subprocess.Popen(
        [sys.executable, "-m", "lockgate", "serve", "--port", str(gw.port)],
        cwd=tmp_path,
        env=gw.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(gw.base_url + "/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        banner = gw.logs()
        assert f"http://127.0.0.1:{gw.port}/v1" in banner and DEV_MASTER_KEY in banner and "mock-gpt" in banner
        client = openai.OpenAI(base_url=gw.url, api_key=DEV_MASTER_KEY, max_retries=0)
        models = {m.id: m.owned_by for m in client.models.list()}
        assert models["mock-gpt"] == "lockgate-mock"
        reply = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "ping"}])
        assert reply.choices[0].message.content == "This is a mock reply from Lockgate. You said: ping"
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "ping"}], stream=True)
        )
        assert text == reply.choices[0].message.content
        assert os.path.isdir(tmp_path)
    finally:
        gw.stop()
