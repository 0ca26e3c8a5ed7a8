"""OpenAI's Codex CLI as a real Responses client: `codex exec` -> `lockgate serve` /v1/responses (a custom model
provider, wire_api "responses"), on the mock and on a translated OpenAI-protocol deployment running a tool.

Installed by `make codex` (npm); skipped when missing, except under CI=true. Runs offline: with the flags
below, Codex's only connection is to the gateway (asserted from its own debug log).
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import openai_deployment
from tests.fakes.openai_upstream import FakeOpenAI, Reply
from tests.harness import MASTER_KEY, GatewayProcess, missing, under_ci
from tests.usage_helpers import fetch, usage_config

ROOT = Path(__file__).resolve().parent.parent
_FOUND = sorted(glob.glob(str(ROOT / ".tools/codex/node_modules/@openai/codex-*/vendor/*/bin/codex")))
CODEX = _FOUND[0] if _FOUND else None

if CODEX is None and not under_ci():
    pytest.skip("Codex CLI is not installed (run `make codex`)", allow_module_level=True)


@pytest.fixture(autouse=True)
def _installed() -> None:
    # Under CI a missing CLI fails each test of this module; the rest of the suite still runs.
    if CODEX is None:
        missing("Codex CLI is not installed", "run `make codex`")


ANSWER = "Hello from Lockgate via Codex."
# Codex's defaults that a translated deployment cannot serve or that reach the internet:
#  - multi_agent sends a `namespace` tool and web_search a hosted `web_search` tool (400 naming `tools` on a
#    translated deployment, as for any hosted tool);
#  - plugins syncs a curated plugin list from github.com / chatgpt.com at start-up; analytics exports OTLP
#    metrics to ab.chatgpt.com. Both fail harmlessly offline; turned off so the run is self-contained.
OFFLINE = ["--disable", "multi_agent", "--disable", "plugins", "-c", 'web_search="disabled"', "-c", "analytics.enabled=false"]


@pytest.fixture(scope="module")
def gateway(fake_openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("codex-gw")
    db = f"sqlite:///{workdir / 'gw.db'}"
    models: list[dict[str, Any]] = [
        {"name": "codex-mock", "deployments": [{"provider": "mock", "model": "mock-codex", "mock_response": ANSWER}]},
        {"name": "codex-openai", "deployments": [openai_deployment(fake_openai_server)]},
    ]
    gw = GatewayProcess(usage_config({"auth": {"master_key": MASTER_KEY}, "models": models}, db), workdir).start()
    gw.db_url = db  # type: ignore[attr-defined]
    yield gw
    gw.stop()


def run_codex(
    gateway: GatewayProcess, home: Path, model: str, prompt: str, *extra: str, flags: list[str] = OFFLINE, ok: bool = True
) -> tuple[str, str]:
    """`codex exec` in `home` (its CODEX_HOME and work dir); the last message and Codex's debug log."""
    codex_home, work = home / "codex-home", home / "work"
    codex_home.mkdir()
    work.mkdir()
    # Codex at the gateway as a custom model provider speaking the Responses API; the key from the env.
    (codex_home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "lockgate"\n'
        "[model_providers.lockgate]\n"
        'name = "Lockgate"\n'
        f'base_url = "{gateway.url}"\n'
        'env_key = "LOCKGATE_API_KEY"\n'
        'wire_api = "responses"\n'
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "LOCKGATE_API_KEY": MASTER_KEY,
        "RUST_LOG": "reqwest=debug",  # its connections, to check that the gateway is the only one
    }
    last = home / "last.txt"
    done = subprocess.run(
        [CODEX, "exec", "--skip-git-repo-check", "--ephemeral", "-o", str(last), *flags, *extra, prompt],  # type: ignore[list-item]
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    if not ok:
        assert done.returncode != 0, done.stdout[-2000:]
        return "", done.stderr
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:], gateway.logs()[-3000:])
    connections = set(re.findall(r"starting new connection: (\S+)", done.stderr))
    assert connections == {f"{gateway.base_url}/"}, connections  # offline: nothing but the gateway
    return last.read_text().strip(), done.stderr


def usage_rows(gateway: GatewayProcess, model: str) -> list[dict[str, Any]]:
    db = gateway.db_url  # type: ignore[attr-defined]
    return fetch(db, "SELECT * FROM usage_records WHERE endpoint = 'responses' AND model = :m ORDER BY started_at", m=model)


def wait_rows(gateway: GatewayProcess, model: str, n: int) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + 10
    rows = usage_rows(gateway, model)
    while len(rows) < n and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = usage_rows(gateway, model)
    return rows


def test_codex_exec_answers_through_the_gateway(gateway: GatewayProcess, tmp_path: Path) -> None:
    answer, _ = run_codex(gateway, tmp_path, "codex-mock", "Say hi")
    assert answer == ANSWER
    rows = wait_rows(gateway, "codex-mock", 1)
    assert len(rows) == 1 and rows[0]["status"] == 200 and rows[0]["streamed"]  # Codex streams
    assert rows[0]["prompt_tokens"] > 0 and rows[0]["completion_tokens"] == len(ANSWER.split(" "))


def test_codex_runs_a_tool_through_a_translated_deployment(
    gateway: GatewayProcess, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # The model asks for Codex's shell tool; Codex runs it, sends the function_call_output back, the model answers.
    command = {"cmd": "echo lockgate-ok > out.txt"}
    fake_openai.script.extend(
        [
            Reply(
                content=None,
                tool_calls=[
                    {
                        "id": "call_sh_1",
                        "type": "function",
                        "function": {"name": "exec_command", "arguments": json.dumps(command)},
                    }
                ],
            ),
            Reply(content="Done: the file is written."),
        ]
    )
    answer, _ = run_codex(
        gateway, tmp_path, "codex-openai", "Write lockgate-ok to out.txt", "--dangerously-bypass-approvals-and-sandbox"
    )
    assert answer == "Done: the file is written."
    assert (tmp_path / "work" / "out.txt").read_text().strip() == "lockgate-ok"
    turns = [seen.body for seen in fake_openai.requests if seen.body.get("tools")]
    assert len(turns) == 2 and all(t["stream"] for t in turns)
    assert "exec_command" in {t["function"]["name"] for t in turns[0]["tools"]}
    calls = [m for m in turns[1]["messages"] if m["role"] == "assistant" and m.get("tool_calls")]
    results = [m for m in turns[1]["messages"] if m["role"] == "tool"]
    assert calls and calls[-1]["tool_calls"][0]["id"] == "call_sh_1"
    assert results and results[-1]["tool_call_id"] == "call_sh_1"
    rows = wait_rows(gateway, "codex-openai", 2)
    assert len(rows) >= 2 and all(r["status"] == 200 for r in rows)


def test_codex_defaults_ask_for_tools_a_translated_deployment_refuses(gateway: GatewayProcess, tmp_path: Path) -> None:
    # Codex's default tool set includes a `namespace` tool (multi_agent) and hosted web_search: a 400 naming
    # `tools` that Codex shows, never a silent drop (docs/responses.md says which flags turn them off).
    before = len(gateway.access_lines())
    _, stderr = run_codex(gateway, tmp_path, "codex-mock", "Say hi", flags=["--disable", "plugins"], ok=False)
    assert "is not supported" in stderr and '"param":"tools"' in stderr, stderr[-2000:]
    refused = [r for r in gateway.wait_for_records(before + 1)[before:] if r.get("endpoint") == "responses"]
    assert refused and all(r["status"] == 400 for r in refused)
