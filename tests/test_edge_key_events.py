"""auth.key_events from the outside: a real `lockgate serve`, its admin API, a real receiver that fails first.

Create, change, rotate and revoke each reach the receiver, in order, as the key's SHA-256
(never the secret), retried while the receiver refuses.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from tests.fakes.server import ThreadedServer
from tests.harness import MASTER_KEY, GatewayProcess

TOKEN = "edge-token-0123456789abcdef"


class Receiver:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.refuse = 2  # the first POSTs are answered 503
        self.server = ThreadedServer(lambda app: app.router.add_post("/key-events", self.take), "key-events")
        self.port = self.server.start()

    async def take(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return web.json_response({}, status=403)
        if self.refuse > 0:
            self.refuse -= 1
            return web.json_response({}, status=503)
        self.events.extend((await request.json())["events"])
        return web.json_response({"written": 1})


def key_events(receiver: "Receiver", **extra: Any) -> dict[str, Any]:
    """auth.key_events pointing at the receiver, with its token."""
    url = f"http://127.0.0.1:{receiver.port}/key-events"
    return {"url": url, "headers": {"Authorization": f"Bearer {TOKEN}"}, **extra}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_key_changes_reach_the_edge_in_order_as_hashes(tmp_path: Path) -> None:
    receiver = Receiver()
    config = {
        "auth": {
            "master_key": MASTER_KEY,
            "key_events": key_events(receiver, retry_max_s=0.3),
        },
        "database": {"url": f"sqlite:///{tmp_path / 'lg.db'}"},
        "models": [{"name": "m", "deployments": [{"provider": "mock", "model": "m"}]}],
    }
    gw = GatewayProcess(config, tmp_path).start()
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    try:
        created = httpx.post(f"{gw.base_url}/admin/keys", json={"name": "k", "rpm": 7}, headers=admin).json()
        patched = httpx.patch(f"{gw.base_url}/admin/keys/{created['id']}", json={"rpm": 9}, headers=admin)
        assert patched.status_code == 200
        rotated = httpx.post(f"{gw.base_url}/admin/keys/{created['id']}/rotate", headers=admin).json()
        assert httpx.delete(f"{gw.base_url}/admin/keys/{created['id']}", headers=admin).status_code == 200
        deadline = time.monotonic() + 15
        while len(receiver.events) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        assert gw.stop() == 0
        receiver.server.stop()
    old, new, key_id = sha(created["key"]), sha(rotated["key"]), created["id"]
    got = [(e["type"], e["key_hash"], e["key_id"], e["rpm"]) for e in receiver.events]
    assert got == [
        ("upsert", old, key_id, 7),  # created
        ("upsert", old, key_id, 9),  # changed
        ("revoke", old, key_id, 9),  # rotated: the old secret is revoked...
        ("upsert", new, key_id, 9),  # ...and the new one known
        ("revoke", new, key_id, 9),  # revoked
    ]
    assert receiver.refuse == 0  # the refusals were served: the events came on a retry
    for body in receiver.bodies:  # never a secret on the wire
        assert created["key"].encode() not in body and rotated["key"].encode() not in body


def test_sync_edge_back_fills_keys_made_before_the_edge(tmp_path: Path) -> None:
    """Keys created while no edge listened reach it with `lockgate keys sync-edge`, revoked ones as revocations."""
    import subprocess
    import sys

    import yaml

    db = f"sqlite:///{tmp_path / 'lg.db'}"
    config: dict[str, Any] = {
        "auth": {"master_key": MASTER_KEY},  # no key_events yet
        "database": {"url": db},
        "models": [{"name": "m", "deployments": [{"provider": "mock", "model": "m"}]}],
    }
    gw = GatewayProcess(config, tmp_path).start()
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    try:
        keys = [
            httpx.post(f"{gw.base_url}/admin/keys", json={"name": f"k{i}", "rpm": i + 1}, headers=admin).json() for i in range(3)
        ]
        assert httpx.delete(f"{gw.base_url}/admin/keys/{keys[1]['id']}", headers=admin).status_code == 200
    finally:
        assert gw.stop() == 0

    receiver = Receiver()  # refuses the first two POSTs: the command retries
    edge_config = {
        **config,
        "auth": {
            "master_key": MASTER_KEY,
            "key_events": key_events(receiver),
        },
    }
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(edge_config))
    cli = [sys.executable, "-m", "lockgate", "keys", "sync-edge", "--config", str(path), "--timeout", "20"]
    try:
        done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
        unconfigured = subprocess.run([*cli[:5], "--config", str(gw.config_path)], capture_output=True, text=True, timeout=60)
    finally:
        receiver.server.stop()
    assert done.returncode == 0, done.stderr
    assert "Sent 3 keys to the edge (1 as revoked)." in done.stdout
    got = sorted((e["key_id"], e["type"], e["key_hash"], e["rpm"]) for e in receiver.events)
    want = sorted((k["id"], "revoke" if k is keys[1] else "upsert", sha(k["key"]), i + 1) for i, k in enumerate(keys))
    assert got == want
    assert receiver.refuse == 0
    for body in receiver.bodies:
        assert not any(k["key"].encode() in body for k in keys)
    assert unconfigured.returncode == 2 and "auth.key_events is not configured" in unconfigured.stderr
