"""Virtual keys end to end, on SQLite and PostgreSQL: the admin API, the CLI, allowlists, expiry,
revocation and rotation, against a real `lockgate serve` — and no secret in its logs."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import basic_config
from tests.dbs import module_db_url  # noqa: F401
from tests.fakes.openai_upstream import UPSTREAM_KEY, FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess

TTL_S = 0.5  # key_cache_ttl_s: short, so another process's revocation shows within a test


@pytest.fixture(scope="module")
def gateway(
    module_db_url: str,
    fake_openai_server: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    config = basic_config(fake_openai_server)
    config["auth"].update(key_cache_ttl_s=TTL_S, max_failures_per_minute=1000)
    config["database"] = {"url": module_db_url}
    gw = GatewayProcess(config, tmp_path_factory.mktemp("gw-keys")).start()
    yield gw
    gw.stop()


@pytest.fixture
def admin(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10) as c:
        yield c


def chat(gateway: GatewayProcess, key: str, model: str = "mock-gpt") -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )


def cli(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockgate", *args, "--config", str(gateway.config_path)],
        cwd=gateway.workdir,
        env=gateway.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_status(gateway: GatewayProcess, key: str, status: int, within_s: float = TTL_S + 1.5) -> httpx.Response:
    deadline = time.monotonic() + within_s
    while True:
        resp = chat(gateway, key)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


SECRETS_SEEN: list[str] = []  # every plaintext key these tests handled: none may appear in the logs


def create(admin: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = admin.post("/admin/keys", json={"name": "test", **body})
    assert resp.status_code == 201, resp.text
    out = resp.json()
    SECRETS_SEEN.append(out["key"])
    return out


def test_create_use_list_get_and_the_secret_is_shown_once(gateway: GatewayProcess, admin: httpx.Client) -> None:
    created = create(
        admin,
        name="app-1",
        user="u1",
        team="t1",
        rpm=100,
        tpm=100000,
        max_budget_usd=5,
        budget_period="monthly",
        metadata={"env": "dev"},
    )
    key = created["key"]
    assert key.startswith("lg-") and len(key) >= 3 + 43  # 32 random bytes, base64url
    assert created["key_prefix"] == key[: len(created["key_prefix"])] and len(created["key_prefix"]) < 16
    assert (created["user"], created["team"], created["rpm"], created["budget_period"]) == ("u1", "t1", 100, "monthly")

    client = openai.OpenAI(base_url=gateway.url, api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content

    listed = admin.get("/admin/keys").json()
    assert listed["object"] == "list"
    assert [k["id"] for k in admin.get("/admin/keys", params={"user": "u1"}).json()["data"]] == [created["id"]]
    page = admin.get("/admin/keys", params={"limit": 1, "offset": 0}).json()["data"]
    assert len(page) == 1
    assert admin.get("/admin/keys", params={"limit": 0}).status_code == 400
    one = next(k for k in listed["data"] if k["id"] == created["id"])
    fetched = admin.get(f"/admin/keys/{created['id']}").json()
    for view in (one, fetched):
        assert "key" not in view and "key_hash" not in view
        assert key not in json.dumps(view)
        assert view["name"] == "app-1" and view["metadata"] == {"env": "dev"} and view["revoked"] is False


def test_the_record_names_the_key_id_user_and_team(gateway: GatewayProcess, admin: httpx.Client) -> None:
    created = create(admin, name="rec", user="u-rec", team="t-rec")
    before = len(gateway.access_lines())
    assert chat(gateway, created["key"]).status_code == 200
    lines = gateway.wait_for_records(before + 1)
    mine = [r for r in lines if r.get("key_id") == created["id"]]
    assert mine and mine[-1]["user"] == "u-rec" and mine[-1]["team"] == "t-rec"


def test_model_allowlist_is_enforced_and_models_are_filtered(gateway: GatewayProcess, admin: httpx.Client) -> None:
    key = create(admin, name="only-mock", models=["mock-gpt"])["key"]
    assert chat(gateway, key, "mock-gpt").status_code == 200
    denied = chat(gateway, key, "gpt-test")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "model_not_allowed" and denied.json()["error"]["param"] == "model"
    client = openai.OpenAI(base_url=gateway.url, api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == ["mock-gpt"]
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="gpt-test", input="x")
    # An empty list means every model.
    everything = create(admin, name="all", models=[])["key"]
    assert chat(gateway, everything, "gpt-test").status_code == 200


def test_patch_applies_at_once_on_this_replica(gateway: GatewayProcess, admin: httpx.Client) -> None:
    created = create(admin, name="patchme")
    key = created["key"]
    assert chat(gateway, key, "gpt-test").status_code == 200
    resp = admin.patch(f"/admin/keys/{created['id']}", json={"models": ["mock-gpt"], "name": "renamed", "rpm": 7})
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "renamed" and resp.json()["models"] == ["mock-gpt"] and resp.json()["updated_at"]
    assert chat(gateway, key, "gpt-test").status_code == 403  # no wait: this replica dropped its cache entry
    cleared = admin.patch(f"/admin/keys/{created['id']}", json={"models": None, "rpm": None}).json()
    assert cleared["models"] is None and cleared["rpm"] is None and cleared["name"] == "renamed"


def test_revoke_is_immediate_here(gateway: GatewayProcess, admin: httpx.Client) -> None:
    created = create(admin, name="revoke-me")
    assert chat(gateway, created["key"]).status_code == 200
    resp = admin.delete(f"/admin/keys/{created['id']}")
    assert resp.status_code == 200 and resp.json()["revoked"] is True and resp.json()["revoked_at"]
    refused = chat(gateway, created["key"])
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert created["key"] not in refused.text
    rotate = admin.post(f"/admin/keys/{created['id']}/rotate")
    assert rotate.status_code == 409


def test_rotate_replaces_the_secret_and_keeps_the_id(gateway: GatewayProcess, admin: httpx.Client) -> None:
    created = create(admin, name="rotate-me", models=["mock-gpt"])
    old = created["key"]
    assert chat(gateway, old).status_code == 200
    resp = admin.post(f"/admin/keys/{created['id']}/rotate")
    assert resp.status_code == 200, resp.text
    rotated = resp.json()
    SECRETS_SEEN.append(rotated["key"])
    assert rotated["id"] == created["id"] and rotated["key"] != old and rotated["models"] == ["mock-gpt"]
    assert chat(gateway, old).status_code == 401
    assert chat(gateway, rotated["key"]).status_code == 200


def test_expiry(gateway: GatewayProcess, admin: httpx.Client) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.2)
    created = create(admin, name="short-lived", expires_at=soon.isoformat())
    assert chat(gateway, created["key"]).status_code == 200  # now cached as valid…
    time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
    expired = chat(gateway, created["key"])  # …but the cache never outlives the expiry
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    past = create(admin, name="born-expired", expires_at="2020-01-01T00:00:00")
    assert chat(gateway, past["key"]).status_code == 401


def test_admin_api_refuses_non_admins(gateway: GatewayProcess, admin: httpx.Client) -> None:
    key = create(admin, name="plain")["key"]
    key_id = admin.get("/admin/keys").json()["data"][0]["id"]
    calls = [
        ("POST", "/admin/keys", {"name": "x"}),
        ("GET", "/admin/keys", None),
        ("GET", f"/admin/keys/{key_id}", None),
        ("PATCH", f"/admin/keys/{key_id}", {"rpm": 1}),
        ("DELETE", f"/admin/keys/{key_id}", None),
        ("POST", f"/admin/keys/{key_id}/rotate", None),
    ]
    for method, path, body in calls:
        as_key = httpx.request(method, gateway.base_url + path, json=body, headers={"authorization": f"Bearer {key}"})
        assert as_key.status_code == 403, (method, path, as_key.text)
        assert as_key.json()["error"]["code"] == "admin_required"
        anonymous = httpx.request(method, gateway.base_url + path, json=body)
        assert anonymous.status_code == 401
        wrong = httpx.request(method, gateway.base_url + path, json=body, headers={"authorization": "Bearer lg-nope"})
        assert wrong.status_code == 401
    assert admin.get(f"/admin/keys/{key_id}").json()["revoked"] is False  # nothing above changed it


def test_admin_input_errors_are_openai_shaped(gateway: GatewayProcess, admin: httpx.Client) -> None:
    cases = [
        admin.post("/admin/keys", json={}),
        admin.post("/admin/keys", json={"name": "x", "budget_period": "hourly", "max_budget_usd": 1}),
        admin.post("/admin/keys", json={"name": "x", "budget_period": "daily"}),
        admin.post("/admin/keys", json={"name": "x", "rpm": 0}),
        admin.post("/admin/keys", json={"name": "x", "surprise": 1}),
        admin.post("/admin/keys", content=b"{not json", headers={"content-type": "application/json"}),
        admin.patch("/admin/keys/whatever", json={"name": None}),
    ]
    for resp in cases:
        assert resp.status_code == 400, resp.text
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    missing = admin.get("/admin/keys/key_doesnotexist")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "id"
    assert admin.delete("/admin/keys/key_doesnotexist").status_code == 404
    assert admin.post("/admin/keys/key_doesnotexist/rotate").status_code == 404


def test_admin_routes_are_in_the_openapi_spec(gateway: GatewayProcess) -> None:
    spec = httpx.get(f"{gateway.base_url}/openapi.json").json()
    assert {"post", "get"} <= set(spec["paths"]["/admin/keys"])
    assert {"get", "patch", "delete"} <= set(spec["paths"]["/admin/keys/{key_id}"])
    assert "post" in spec["paths"]["/admin/keys/{key_id}/rotate"]
    assert "KeyCreate" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]


def test_cli_create_list_revoke_against_the_same_database(gateway: GatewayProcess, admin: httpx.Client) -> None:
    made = cli(
        gateway,
        "keys",
        "create",
        "--name",
        "from-cli",
        "--models",
        "mock-gpt",
        "--rpm",
        "300",
        "--budget",
        "2.5",
        "--period",
        "weekly",
        "--expires",
        "30d",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    SECRETS_SEEN.append(created["key"])
    assert created["models"] == ["mock-gpt"] and created["rpm"] == 300 and created["budget_period"] == "weekly"
    expires = dt.datetime.fromisoformat(created["expires_at"])
    assert dt.timedelta(days=29) < expires - dt.datetime.now(dt.UTC) < dt.timedelta(days=31)
    # The running gateway accepts a key it has never seen (a cache miss reads the database).
    assert chat(gateway, created["key"]).status_code == 200
    assert chat(gateway, created["key"], "gpt-test").status_code == 403
    assert admin.get(f"/admin/keys/{created['id']}").json()["name"] == "from-cli"

    listed = cli(gateway, "keys", "list")
    assert listed.returncode == 0 and created["id"] in listed.stdout and created["key"] not in listed.stdout
    plain = cli(gateway, "keys", "create", "--name", "plain-out")
    assert plain.returncode == 0 and "lg-" in plain.stdout and "shown only this once" in plain.stdout
    SECRETS_SEEN.extend(w for w in plain.stdout.split() if w.startswith("lg-"))

    revoked = cli(gateway, "keys", "revoke", created["id"])
    assert revoked.returncode == 0, revoked.stderr
    # Another process revoked it: this gateway refuses it within key_cache_ttl_s.
    start = time.monotonic()
    assert wait_status(gateway, created["key"], 401).status_code == 401
    assert time.monotonic() - start <= TTL_S + 1.0
    assert cli(gateway, "keys", "revoke", "key_nope").returncode == 1
    assert cli(gateway, "db", "upgrade").returncode == 0


def test_cli_rejects_bad_arguments(gateway: GatewayProcess) -> None:
    assert cli(gateway, "keys", "create", "--name", "x", "--expires", "soonish").returncode == 2
    assert cli(gateway, "keys", "create", "--name", "x", "--period", "daily").returncode == 2
    assert cli(gateway, "keys", "create").returncode == 2


def test_zz_no_secret_in_the_logs(gateway: GatewayProcess) -> None:
    """Runs last in the module: every key, hash and the master key stay out of the captured output."""
    from lockgate.auth.keys import hash_key

    assert SECRETS_SEEN
    logs = gateway.logs()
    assert "database_ready" in logs  # the log was captured
    for secret in [MASTER_KEY, UPSTREAM_KEY, *SECRETS_SEEN]:
        assert secret not in logs
        assert secret[12:] not in logs  # not even the tail
        assert hash_key(secret) not in logs
    assert "Traceback" not in logs
