"""The admin API with httpx (master key or an admin JWT): a team with a budget, a key in it, then usage."""

import os

import httpx

admin = httpx.Client(
    base_url=os.environ.get("LOCKGATE_URL", "http://127.0.0.1:4000"),
    headers={"Authorization": f"Bearer {os.environ['LOCKGATE_KEY']}"},
)

team = admin.post("/admin/teams", json={"id": "research", "max_budget_usd": 200, "budget_period": "monthly", "rpm": 600})
print("team:", team.status_code, team.json().get("id", team.json()))

made = admin.post("/admin/keys", json={"name": "notebook", "team": "research", "models": ["gpt-4o-mini"], "rpm": 60})
made.raise_for_status()
key = made.json()
print("key:", key["id"], key["key_prefix"] + "…", "models", key["models"])

# The new key calls the gateway like any OpenAI key.
chat = httpx.post(
    admin.base_url.join("/v1/chat/completions"),
    headers={"Authorization": f"Bearer {key['key']}"},
    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
)
print("chat:", chat.status_code, "remaining requests this minute:", chat.headers.get("x-ratelimit-remaining-requests"))

changed = admin.patch(f"/admin/keys/{key['id']}", json={"rpm": 120}).json()
print("rpm now:", changed["rpm"])
revoked = admin.delete(f"/admin/keys/{key['id']}").json()
print("revoked:", revoked["revoked"])
usage = admin.get("/admin/usage", params={"group_by": "team"}).json()
print("usage rows:", [(row.get("team"), row["requests"]) for row in usage["data"]])
