"""openai-node (the official TypeScript SDK) against `lockgate serve` /v1/responses: `node --test` runs
tests/node/responses/responses.test.mjs (text, `for await` stream, `responses.stream()`, a parallel tool
round trip, error classes) against the fake OpenAI upstream, translated through chat.

openai-node comes from tests/node/responses/package-lock.json (`make node-responses`, which this test runs:
`npm ci`). Without node/npm it skips, except under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import basic_config
from tests.fakes.openai_upstream import FakeOpenAI, Reply
from tests.harness import MASTER_KEY, GatewayProcess, missing

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests/node/responses"


@pytest.fixture(scope="module")
def node() -> str:
    found, npm = shutil.which("node"), shutil.which("npm")
    if found is None or npm is None:
        missing("node and npm are not installed", "install Node.js (Debian: nodejs, npm) to run the openai-node test")
    assert found is not None
    make = subprocess.run(["make", "node-responses"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if make.returncode != 0:
        missing(f"`make node-responses` (npm ci) failed: {make.stderr[-1500:]}", "the npm registry must be reachable")
    return found


@pytest.fixture(scope="module")
def gateway(fake_openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("node-gw")
    gw = GatewayProcess(basic_config(fake_openai_server, database={"url": f"sqlite:///{workdir / 'gw.db'}"}), workdir).start()
    yield gw
    gw.stop()


def test_openai_node_responses(node: str, gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    # What the fake answers to the requests that carry tools, in order: two parallel calls whose argument
    # deltas interleave (index 0, 1, 0, 1...), then the answer to their outputs.
    fake_openai.script.extend(
        [
            Reply(
                content=None,
                interleave_tools=True,
                tool_calls=[
                    {
                        "id": f"call_n{i}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps({"city": c})},
                    }
                    for i, c in ((1, "Paris"), (2, "Rome"))
                ],
            ),
            Reply(content="Paris 18C, Rome 25C."),
        ]
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "LOCKGATE_BASE_URL": gateway.url,
        "LOCKGATE_API_KEY": MASTER_KEY,
        "LOCKGATE_MODEL": "gpt-test",
    }
    done = subprocess.run(
        [node, "--test", "--test-concurrency=1", "responses.test.mjs"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "# pass 5" in done.stdout and "# fail 0" in done.stdout, done.stdout[-2000:]
    # The tool turns went upstream as chat: the second carried both calls and their outputs.
    turns = [seen.body for seen in fake_openai.requests if seen.body.get("tools")]
    assert len(turns) == 2
    tool_messages = [m for m in turns[1]["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [("call_n1", "18C"), ("call_n2", "25C")]
