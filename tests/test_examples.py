"""Every program under examples/ runs against a real `lockgate serve` (mock models), its output asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs_support import mock_gateway
from tests.harness import MASTER_KEY, GatewayProcess, missing

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAID = "This is a mock reply from Lockgate. You said: "


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    yield from mock_gateway(tmp_path_factory.mktemp("examples"))


def run(gateway: GatewayProcess, *cmd: str) -> str:
    env = {**os.environ, "LOCKGATE_URL": gateway.base_url, "LOCKGATE_KEY": MASTER_KEY}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=EXAMPLES)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def curl(gateway: GatewayProcess, name: str) -> str:
    if shutil.which("curl") is None:
        missing("curl is not installed", "apt-get install curl")
    return run(gateway, "bash", f"curl/{name}")


def python(gateway: GatewayProcess, name: str) -> str:
    return run(gateway, sys.executable, f"python/{name}")


def test_curl_chat(gateway: GatewayProcess) -> None:
    body = json.loads(curl(gateway, "chat.sh"))
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == SAID + "Name one prime number."


def test_curl_stream(gateway: GatewayProcess) -> None:
    events = [line[6:] for line in curl(gateway, "stream.sh").splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == SAID + "Count to three."
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_curl_embeddings(gateway: GatewayProcess) -> None:
    body = json.loads(curl(gateway, "embeddings.sh"))
    assert [d["index"] for d in body["data"]] == [0, 1] and len(body["data"][0]["embedding"]) == 8


def test_curl_models(gateway: GatewayProcess) -> None:
    ids = {m["id"] for m in json.loads(curl(gateway, "models.sh"))["data"]}
    assert {"gpt-4o-mini", "claude-sonnet", "text-embedding-3-small"} <= ids


def test_curl_create_key(gateway: GatewayProcess) -> None:
    lines = curl(gateway, "create_key.sh").splitlines()
    created = json.loads(lines[0])
    assert created["key"].startswith("lg-") and created["models"] == ["gpt-4o-mini"]
    assert created["max_budget_usd"] == 50 and created["budget_period"] == "monthly"
    assert lines[1:] == ["gpt-4o-mini: 200", "gpt-4o: 403"]


def test_curl_usage(gateway: GatewayProcess) -> None:
    curl(gateway, "chat.sh")
    deadline = time.monotonic() + 10  # usage is written off the request path: it may land a moment later
    while True:
        mine, everyone = (json.loads(line) for line in curl(gateway, "usage.sh").splitlines())
        if any(row["requests"] >= 1 for row in everyone["data"]) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine["group_by"] == "model" and everyone["group_by"] == "key"
    assert any(row["requests"] >= 1 for row in everyone["data"])


def test_python_openai_chat(gateway: GatewayProcess) -> None:
    out = python(gateway, "openai_chat.py").splitlines()
    assert out[0] == SAID + "Name one prime number." and out[1].startswith("tokens: ") and int(out[1][8:]) > 0


def test_python_openai_stream(gateway: GatewayProcess) -> None:
    out = python(gateway, "openai_stream.py").splitlines()
    assert out[0] == SAID + "Count to three." and out[1].startswith("usage: ")


def test_python_openai_embeddings(gateway: GatewayProcess) -> None:
    out = python(gateway, "openai_embeddings.py")
    assert out.startswith("2 vectors of 8 dimensions; cosine similarity ")


def test_python_openai_errors(gateway: GatewayProcess) -> None:
    assert python(gateway, "openai_errors.py").splitlines() == [
        "AuthenticationError 401 invalid_api_key",
        "NotFoundError 404 model_not_found",
        "BadRequestError 400 messages",
    ]


def test_python_async_many(gateway: GatewayProcess) -> None:
    out = python(gateway, "async_many.py")
    assert out.startswith("50 answers in ") and out.strip().endswith("all distinct: True")


def test_python_admin_httpx(gateway: GatewayProcess) -> None:
    out = python(gateway, "admin_httpx.py").splitlines()
    assert out[0] == "team: 201 research"
    assert out[1].startswith("key: key_") and out[1].endswith("models ['gpt-4o-mini']")
    assert out[2] == "chat: 200 remaining requests this minute: 59"
    assert out[3:5] == ["rpm now: 120", "revoked: True"]
    assert out[5].startswith("usage rows: [")  # this key's request may still be in the usage batch


def test_python_anthropic_messages(gateway: GatewayProcess) -> None:
    out = python(gateway, "anthropic_messages.py").splitlines()
    assert out[0] == SAID + "Name one prime number." and out[1].startswith("tokens: ")
    assert out[2] == SAID + "Count to three."


def test_python_openai_responses(gateway: GatewayProcess) -> None:
    out = python(gateway, "openai_responses.py").splitlines()
    assert out == [SAID + "Name one prime number.", SAID + "And another one?", "stored: True"]


def test_python_langchain(gateway: GatewayProcess) -> None:
    out = python(gateway, "langchain_chat.py").splitlines()
    assert out == [SAID + "Name one prime number.", SAID + "Count to three."]


def node(gateway: GatewayProcess, name: str) -> str:
    if shutil.which("node") is None:
        missing("node is not installed", "apt-get install nodejs npm")
    if not (EXAMPLES / "node" / "node_modules" / "openai").exists():
        missing("the Node examples' packages are not installed", "make examples-node (npm ci)")
    return run(gateway, "node", f"node/{name}")


def test_node_chat(gateway: GatewayProcess) -> None:
    out = node(gateway, "chat.mjs").splitlines()
    assert out[0] == SAID + "Name one prime number." and out[1].startswith("tokens: ")


def test_node_stream(gateway: GatewayProcess) -> None:
    out = node(gateway, "stream.mjs").splitlines()
    assert out[0] == SAID + "Count to three." and out[1].startswith("usage: ")


def test_node_errors(gateway: GatewayProcess) -> None:
    assert node(gateway, "errors.mjs").splitlines() == [
        "NotFoundError 404 model_not_found",
        "AuthenticationError 401 invalid_api_key",
    ]
