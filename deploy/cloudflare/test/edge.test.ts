// The Worker's decisions (src/edge.ts) under node's test runner: `npm test` (make cloudflare-test).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  USAGE_COLUMNS,
  credentialFrom,
  dialectFor,
  errorResponse,
  instanceFor,
  judgeKey,
  kvWrite,
  parseConfig,
  preflightHeaders,
  rateLimited,
  sameSecret,
  sha256Hex,
  slide,
  usageValues,
  type KeyEntry,
} from "../src/edge.ts";

const h = (init: Record<string, string>) => new Headers(init);

test("credentials: bearer, x-api-key, missing and malformed", () => {
  assert.deepEqual(credentialFrom(h({ authorization: "Bearer lg-abc" })), { kind: "token", token: "lg-abc" });
  assert.deepEqual(credentialFrom(h({ authorization: "bearer   lg-abc  " })), { kind: "token", token: "lg-abc" });
  assert.deepEqual(credentialFrom(h({ "x-api-key": "lg-xyz" })), { kind: "token", token: "lg-xyz" });
  assert.deepEqual(credentialFrom(h({})), { kind: "none" });
  assert.deepEqual(credentialFrom(h({ authorization: "Basic dXNlcjpwYXNz" })), { kind: "malformed" });
  assert.deepEqual(credentialFrom(h({ authorization: "Bearer two words" })), { kind: "malformed" });
  assert.deepEqual(credentialFrom(h({ authorization: "Bearer " + "x".repeat(5000) })), { kind: "malformed" });
  assert.deepEqual(credentialFrom(h({ authorization: "Bearer caf\u00e9" })), { kind: "malformed" });
});

test("errors on /v1/messages are Anthropic-shaped, with the edge's request id", async () => {
  assert.equal(dialectFor("/v1/messages"), "anthropic");
  assert.equal(dialectFor("/v1/messages/count_tokens"), "anthropic");
  assert.equal(dialectFor("/v1/messagesx"), "openai");
  assert.equal(dialectFor("/v1/chat/completions"), "openai");
  const limited = errorResponse(rateLimited("slow down", 1), {}, "anthropic", "edge-1");
  assert.equal(limited.status, 429);
  assert.equal(limited.headers.get("retry-after"), "1");
  assert.deepEqual(await limited.json(), { type: "error", error: { type: "rate_limit_error", message: "slow down" }, request_id: "edge-1" });
  const noKey = await errorResponse({ status: 401, type: "invalid_request_error", code: "invalid_api_key", message: "m" }, {}, "anthropic").json();
  assert.deepEqual(noKey, { type: "error", error: { type: "authentication_error", message: "m" } });
  const big = await errorResponse({ status: 413, type: "invalid_request_error", code: "request_too_large", message: "m" }, {}, "anthropic").json();
  assert.equal(big.error.type, "request_too_large");
  const down = await errorResponse({ status: 502, type: "api_error", code: null, message: "m" }, {}, "anthropic").json();
  assert.equal(down.error.type, "api_error");
});

test("errors are OpenAI-shaped", async () => {
  const r = errorResponse(rateLimited("slow down", 2.2, { "x-a": "1" }));
  assert.equal(r.status, 429);
  assert.equal(r.headers.get("retry-after"), "3");
  assert.equal(r.headers.get("x-a"), "1");
  assert.deepEqual(await r.json(), { error: { message: "slow down", type: "requests", param: null, code: "rate_limit_exceeded" } });
});

test("config: defaults, switches and bad values", () => {
  const c = parseConfig({});
  assert.equal(c.instances, 1);
  assert.equal(c.keyCache, "strict");
  assert.equal(c.shield, true);
  assert.deepEqual(c.corsOrigins, []);
  assert.equal(c.localUpstream, null);
  const d = parseConfig({ INSTANCES: "4", CORS_ORIGINS: "https://a.example, https://b.example", EDGE_SHIELD: "off", LOCAL_UPSTREAM: "http://127.0.0.1:9/" });
  assert.equal(d.instances, 4);
  assert.deepEqual(d.corsOrigins, ["https://a.example", "https://b.example"]);
  assert.equal(d.shield, false);
  assert.equal(d.localUpstream, "http://127.0.0.1:9");
  assert.equal(parseConfig({ CORS_ORIGINS: "*" }).corsOrigins, "*");
  assert.throws(() => parseConfig({ INSTANCES: "0" }));
  assert.throws(() => parseConfig({ EDGE_KEY_CACHE: "maybe" }));
  assert.throws(() => parseConfig({ EDGE_SHIELD: "sometimes" }));
});

test("key cache verdicts per mode", () => {
  const live: KeyEntry = { id: "key_1", revoked: false, expires_at: null, rpm: null };
  assert.equal(judgeKey(live, "strict", 100), null);
  assert.equal(judgeKey(null, "strict", 100)?.message, "Incorrect API key provided.");
  assert.equal(judgeKey(null, "revoked", 100), null);
  assert.equal(judgeKey({ ...live, revoked: true }, "revoked", 100)?.message, "This API key has been revoked.");
  assert.equal(judgeKey({ ...live, expires_at: 99 }, "strict", 100)?.message, "This API key has expired.");
  assert.equal(judgeKey({ ...live, expires_at: 101 }, "strict", 100), null);
  assert.equal(judgeKey({ ...live, revoked: true }, "off", 100), null);
});

test("key events become KV writes; malformed ones are refused", () => {
  const hash = "a".repeat(64);
  assert.deepEqual(kvWrite({ type: "upsert", key_hash: hash, key_id: "key_1", rpm: 5 }), {
    name: `key:${hash}`,
    value: { id: "key_1", revoked: false, expires_at: null, rpm: 5 },
  });
  assert.equal(kvWrite({ type: "revoke", key_hash: hash, key_id: "key_1" })?.value.revoked, true);
  assert.equal(kvWrite({ type: "upsert", key_hash: "zz", key_id: "key_1" }), null);
  assert.equal(kvWrite({ type: "delete" as "upsert", key_hash: hash, key_id: "key_1" }), null);
});

test("instances: stable per key, spread over all", () => {
  assert.equal(instanceFor("abc", 5), instanceFor("abc", 5));
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) seen.add(instanceFor(`key-${i}`, 5));
  assert.deepEqual([...seen].sort(), [0, 1, 2, 3, 4]);
  assert.equal(instanceFor("anything", 1), 0);
});

test("sliding window: exact limit, refusal until the oldest hit leaves the window", () => {
  let hits: number[] = [];
  for (const t of [0, 100, 200]) {
    const v = slide(hits, t, 3, 1000);
    assert.equal(v.ok, true);
    hits = v.hits;
  }
  const refused = slide(hits, 500, 3, 1000);
  assert.equal(refused.ok, false);
  assert.equal(refused.retryAfterMs, 500); // the hit at 0 leaves at 1000
  assert.equal(slide(hits, 999, 3, 1000).ok, false);
  const again = slide(hits, 1000, 3, 1000);
  assert.equal(again.ok, true);
  assert.deepEqual(again.hits, [100, 200, 1000]);
  // never more than `limit` hits kept
  assert.ok(slide(again.hits, 5000, 3, 1000).hits.length <= 3);
});

test("CORS preflight headers", () => {
  const p = preflightHeaders("https://a.example", ["https://a.example"], "authorization");
  assert.equal(p["access-control-allow-origin"], "https://a.example");
  assert.equal(p["access-control-allow-headers"], "authorization");
  assert.equal(p.vary, "Origin");
  assert.equal(preflightHeaders("https://x", "*", null)["access-control-allow-origin"], "*");
});

test("usage rows: column order, booleans as 0/1, required fields", () => {
  const row: Record<string, unknown> = Object.fromEntries(USAGE_COLUMNS.map((c) => [c, null]));
  Object.assign(row, { request_id: "r1", started_at: "2026-12-02 01:02:03.000004", endpoint: "chat", status: 200, streamed: true, partial: false });
  const values = usageValues(row);
  assert.ok(Array.isArray(values));
  assert.equal(values.length, 28);
  assert.equal(values[USAGE_COLUMNS.indexOf("streamed")], 1);
  assert.equal(values[USAGE_COLUMNS.indexOf("partial")], 0);
  assert.ok(usageValues({ ...row, request_id: null }) instanceof Error);
  assert.ok(usageValues({ ...row, model: { no: 1 } }) instanceof Error);
});

test("sha256 and secret comparison", async () => {
  assert.equal(await sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert.equal(sameSecret("abc", "abc"), true);
  assert.equal(sameSecret("abc", "abd"), false);
  assert.equal(sameSecret("", ""), false);
});
