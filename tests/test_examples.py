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

import httpx
import pytest

from tests.docs_support import mock_gateway
from tests.harness import MASTER_KEY, GatewayProcess, free_port, missing

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


def test_python_openai_tools(gateway: GatewayProcess) -> None:
    out = python(gateway, "openai_tools.py").splitlines()
    assert out == [
        "call: get_weather {'city': 'Paris', 'unit': 'celsius'}",
        "answer: This is a mock reply from Lockgate. The tool get_weather returned: "
        '{"city": "Paris", "temperature": 18, "unit": "celsius"}',
    ]


def test_python_openai_structured(gateway: GatewayProcess) -> None:
    out = python(gateway, "openai_structured.py").splitlines()
    name, _, data = out[0].partition(" ")
    assert name == "City" and json.loads(data) == {
        "name": "Lisbon",
        "country": "Lisbon",
        "population": 1,
        "coastal": True,
        "landmarks": ["Lisbon"],
    }
    assert out[1] == 'raw: {"colour":"red"}'


def test_python_langchain_tools(gateway: GatewayProcess) -> None:
    out = python(gateway, "langchain_tools.py").splitlines()
    assert out == [
        "tool call: get_weather {'city': 'Paris'}",
        "answer: This is a mock reply from Lockgate. The tool get_weather returned: 18 degrees and sunny in Paris",
    ]


def test_python_langchain(gateway: GatewayProcess) -> None:
    out = python(gateway, "langchain_chat.py").splitlines()
    assert out == [SAID + "Name one prime number.", SAID + "Count to three."]


def need_node() -> None:
    if shutil.which("node") is None:
        missing("node is not installed", "apt-get install nodejs npm")
    for package in ("openai", "ai", "@ai-sdk/openai-compatible", "zod"):
        if not (EXAMPLES / "node" / "node_modules" / package).exists():
            missing("the Node examples' packages are not installed", "make examples-node (npm ci)")


def node(gateway: GatewayProcess, name: str) -> str:
    need_node()
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


def test_node_tools(gateway: GatewayProcess) -> None:
    assert node(gateway, "tools.mjs").splitlines() == [
        'call: get_weather {"city":"Paris","unit":"celsius"}',
        'answer: This is a mock reply from Lockgate. The tool get_weather returned: {"city":"Paris","temperature":18,"unit":"celsius"}',
    ]


def test_node_ai_sdk(gateway: GatewayProcess) -> None:
    out = node(gateway, "ai_sdk.mjs").splitlines()
    assert out[0] == "generateText: " + SAID + "Name one prime number."
    assert out[1].startswith("tokens: ") and int(out[1][8:]) > 0
    assert out[2] == "streamText: " + SAID + "Count to three."
    assert json.loads(out[3].removeprefix("generateObject: ")) == {
        "name": "Lisbon",
        "population": 1,
        "coastal": True,
        "landmarks": ["Lisbon"],
    }
    assert out[4:] == [
        'tool call: getWeather {"city":"Paris"}',
        'answer: This is a mock reply from Lockgate. The tool getWeather returned: {"city":"Paris","temperature":18}',
    ]


def test_node_web_route_streams_to_a_browser(gateway: GatewayProcess) -> None:
    need_node()
    port = free_port()
    env = {**os.environ, "LOCKGATE_URL": gateway.base_url, "LOCKGATE_KEY": MASTER_KEY, "PORT": str(port)}
    server = subprocess.Popen(["node", "node/web_route.mjs"], cwd=EXAMPLES, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == f"listening on http://127.0.0.1:{port}/"
        url = f"http://127.0.0.1:{port}"
        page = httpx.get(url + "/")
        assert page.status_code == 200 and 'fetch("/api/chat"' in page.text and "getReader()" in page.text
        messages = [{"role": "user", "content": "Tell me a story."}]
        with httpx.stream("POST", url + "/api/chat", json={"messages": messages}, timeout=30) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
            assert response.headers.get("transfer-encoding") == "chunked"  # streamed, not buffered
            text = "".join(response.iter_text())
        assert text == SAID + "Tell me a story."
        bad = httpx.post(url + "/api/chat", json={"nope": 1})
        assert bad.status_code == 400 and "messages" in bad.json()["error"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_claude_code_env(gateway: GatewayProcess, tmp_path: Path) -> None:
    found = sorted((EXAMPLES.parent / ".tools/claude-code/node_modules/@anthropic-ai").glob("claude-code-*/claude"))
    if not found:
        missing("Claude Code is not installed", "make claude-code")
    if shutil.which("curl") is None:
        missing("curl is not installed", "apt-get install curl")
    token = run(gateway, "bash", "claude-code/key.sh").strip()
    assert token.startswith("ANTHROPIC_AUTH_TOKEN=lg-")
    settings = dict(
        line.split("=", 1)
        for line in (EXAMPLES / "claude-code/claude-code.env").read_text().splitlines()
        if line and line[0] != "#"
    )
    settings |= dict([token.split("=", 1)]) | {"ANTHROPIC_BASE_URL": gateway.base_url}
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **settings}
    done = subprocess.run(
        [str(found[0]), "-p", "Say hi", "--output-format", "json", "--max-turns", "3"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    # Claude Code sends its tools every turn; the mock calls none it was not asked about, so one turn answers.
    assert result["is_error"] is False and result["num_turns"] == 1 and result["result"] == SAID + "Say hi"


def test_go_chat_stream_and_error(gateway: GatewayProcess, tmp_path: Path) -> None:
    # Go's standard library only (no module download: the build is offline); Debian's golang-go in CI.
    go = shutil.which("go")
    if go is None:
        missing("Go is not installed", "apt-get install golang-go")
    env = {**os.environ, "GOCACHE": str(tmp_path / "cache"), "GOPATH": str(tmp_path / "gopath"), "GOPROXY": "off"}
    env |= {"GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "LOCKGATE_URL": gateway.base_url, "LOCKGATE_KEY": MASTER_KEY}
    done = subprocess.run([go, "run", "chat.go"], capture_output=True, text=True, timeout=300, env=env, cwd=EXAMPLES / "go")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert out[0] == SAID + "Name one prime number." and out[1].startswith("tokens: ") and int(out[1][8:]) > 0
    assert out[2] == SAID + "Count to three." and out[3].startswith("usage: ")
    assert out[4].startswith("404 model_not_found: ")


def test_every_example_is_listed_and_run() -> None:
    # A new example must be in examples/README.md and run by a test here (or it is an example nobody ran).
    readme = (EXAMPLES / "README.md").read_text()
    source = Path(__file__).read_text()
    files = [
        p.relative_to(EXAMPLES)
        for p in EXAMPLES.rglob("*")
        if p.is_file() and "node_modules" not in p.parts and p.suffix in (".sh", ".py", ".mjs", ".env", ".go")
    ]
    assert len(files) > 20
    for path in files:
        assert path.name in readme, f"{path} is not in examples/README.md"
        assert f'"{path.name}"' in source or f'"{path}"' in source, f"no test runs {path}"
