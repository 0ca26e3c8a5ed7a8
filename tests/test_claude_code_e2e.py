"""Claude Code as a real client: `claude -p` -> `lockgate serve` /v1/messages, on a translated and a pass-through deployment.

Installed by `make claude-code` (npm); skipped when missing, except under CI=true.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import openai_deployment
from tests.fakes.anthropic_upstream import UPSTREAM_KEY, FakeAnthropic, text
from tests.fakes.openai_upstream import FakeOpenAI, Reply
from tests.harness import MASTER_KEY, GatewayProcess, missing, under_ci

ROOT = Path(__file__).resolve().parent.parent
_FOUND = sorted(glob.glob(str(ROOT / ".tools/claude-code/node_modules/@anthropic-ai/claude-code-*/claude")))
CLAUDE = _FOUND[0] if _FOUND else None

if CLAUDE is None and not under_ci():
    pytest.skip("Claude Code is not installed (run `make claude-code`)", allow_module_level=True)


@pytest.fixture(autouse=True)
def _installed() -> None:
    # Under CI a missing CLI fails each test of this module; the rest of the suite still runs.
    if CLAUDE is None:
        missing("Claude Code is not installed", "run `make claude-code`")


NAMES = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-6")


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    fake.reply.content = [text("Hello from the fake Anthropic upstream.")]
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(
    fake_server: FakeAnthropic, fake_openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    mock = {"provider": "mock", "model": "mock-claude", "mock_response": "Hello from Lockgate."}
    anthropic = {"provider": "anthropic", "model": "claude-upstream-1", "api_base": fake_server.url, "api_key": UPSTREAM_KEY}
    models: list[dict[str, Any]] = [{"name": n, "deployments": [mock]} for n in NAMES]
    models += [{"name": f"native-{n}", "deployments": [anthropic]} for n in NAMES]
    models += [{"name": f"openai-{n}", "deployments": [openai_deployment(fake_openai_server)]} for n in NAMES]
    gw = GatewayProcess({"auth": {"master_key": MASTER_KEY}, "models": models}, tmp_path_factory.mktemp("cc-gw")).start()
    yield gw
    gw.stop()


def run_claude(gateway: GatewayProcess, home: Path, prefix: str, prompt: str = "Say hi", *extra: str) -> dict[str, Any]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.base_url,
        "ANTHROPIC_AUTH_TOKEN": MASTER_KEY,
        "ANTHROPIC_MODEL": f"{prefix}claude-sonnet-4-6",
        "ANTHROPIC_DEFAULT_SONNET_MODEL": f"{prefix}claude-sonnet-4-6",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": f"{prefix}claude-haiku-4-5",
        "ANTHROPIC_DEFAULT_OPUS_MODEL": f"{prefix}claude-opus-4-6",
        "ANTHROPIC_SMALL_FAST_MODEL": f"{prefix}claude-haiku-4-5",
        "CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # offline: no telemetry, updates or error reports
        "DISABLE_AUTOUPDATER": "1",
    }
    done = subprocess.run(
        [CLAUDE, "-p", prompt, "--output-format", "json", *extra],  # type: ignore[list-item]
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:], gateway.logs()[-3000:])
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("prefix", "answer"), [("", "Hello from Lockgate."), ("native-", "Hello from the fake Anthropic upstream.")]
)
def test_claude_code_completes_through_the_gateway(gateway: GatewayProcess, tmp_path: Path, prefix: str, answer: str) -> None:
    before = len(gateway.access_lines())
    result = run_claude(gateway, tmp_path, prefix)
    assert result["is_error"] is False and result["result"] == answer
    records = [r for r in gateway.wait_for_records(before + 1)[before:] if r.get("endpoint") == "messages"]
    assert records and all(r["status"] == 200 for r in records), [(r["status"], r.get("error_message")) for r in records]
    assert any(r["public_model"] == f"{prefix}claude-sonnet-4-6" for r in records)
    assert any(r.get("session_id") == result["session_id"] for r in records)  # X-Claude-Code-Session-Id


def test_claude_code_runs_a_tool_through_a_translated_deployment(
    gateway: GatewayProcess, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # The model asks for Bash; Claude Code runs it and sends the result back; the model answers.
    command = {"command": "echo lockgate-ok > out.txt", "description": "Write a file"}
    fake_openai.script.extend(
        [
            Reply(
                content=None,
                tool_calls=[
                    {"id": "call_bash_1", "type": "function", "function": {"name": "Bash", "arguments": json.dumps(command)}}
                ],
            ),
            Reply(content="Done: the file is written."),
        ]
    )
    result = run_claude(
        gateway, tmp_path, "openai-", "Write lockgate-ok to out.txt", "--allowedTools", "Bash", "--max-turns", "3"
    )
    assert result["is_error"] is False and result["result"] == "Done: the file is written."
    assert (tmp_path / "out.txt").read_text().strip() == "lockgate-ok"
    turns = [seen.body for seen in fake_openai.requests if seen.body.get("tools")]
    assert len(turns) == 2
    answer = [m for m in turns[1]["messages"] if m["role"] == "tool"]
    assert answer and answer[0]["tool_call_id"] == "call_bash_1"
