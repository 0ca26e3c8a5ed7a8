// The Worker's decisions as pure functions: no Cloudflare import here, so node's test runner checks them
// (test/edge.test.ts) and src/index.ts is only the wiring to bindings. Types only, erasable syntax only
// (node runs this file with its type stripping).

// --- errors: in the shape Lockgate itself answers with, the client's dialect ------------------------
// OpenAI's (lockgate/errors.py) everywhere but on /v1/messages, where it is Anthropic's (lockgate/errors_anthropic.py).

export type EdgeError = { status: number; message: string; type: string; code: string | null; headers?: Record<string, string> };
export type Dialect = "openai" | "anthropic";

export function dialectFor(pathname: string): Dialect {
  return pathname === "/v1/messages" || pathname.startsWith("/v1/messages/") ? "anthropic" : "openai";
}

// Anthropic's error type for a status, as lockgate/errors_anthropic.py TYPE_FOR_STATUS.
const ANTHROPIC_TYPE: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  402: "billing_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  500: "api_error",
  504: "timeout_error",
  529: "overloaded_error",
};

export function anthropicType(status: number): string {
  return ANTHROPIC_TYPE[status] ?? (status < 500 ? "invalid_request_error" : "api_error");
}

function errorBody(err: EdgeError, dialect: Dialect, requestId: string | null): string {
  if (dialect === "anthropic") {
    const body: Record<string, unknown> = { type: "error", error: { type: anthropicType(err.status), message: err.message } };
    if (requestId !== null) body.request_id = requestId;
    return JSON.stringify(body);
  }
  return JSON.stringify({ error: { message: err.message, type: err.type, param: null, code: err.code } });
}

export function errorResponse(
  err: EdgeError,
  extra: Record<string, string> = {},
  dialect: Dialect = "openai",
  requestId: string | null = null,
): Response {
  const body = errorBody(err, dialect, requestId);
  return new Response(body, {
    status: err.status,
    headers: { "content-type": "application/json", "x-lockgate-edge": "refused", ...(err.headers ?? {}), ...extra },
  });
}

export const NO_KEY: EdgeError = {
  status: 401,
  type: "invalid_request_error",
  code: "invalid_api_key",
  message: "You didn't provide an API key. Send it in an Authorization header as 'Bearer YOUR_KEY'.",
};
export const BAD_KEY: EdgeError = { status: 401, type: "invalid_request_error", code: "invalid_api_key", message: "Incorrect API key provided." };
export const REVOKED_KEY: EdgeError = { ...BAD_KEY, message: "This API key has been revoked." };
export const EXPIRED_KEY: EdgeError = { ...BAD_KEY, message: "This API key has expired." };

export function tooLarge(limit: number): EdgeError {
  return { status: 413, type: "invalid_request_error", code: "request_too_large", message: `Request body is larger than ${limit} bytes.` };
}

export function originRefused(origin: string): EdgeError {
  return { status: 403, type: "invalid_request_error", code: "origin_not_allowed", message: `Origin ${origin} is not allowed.` };
}

export function rateLimited(message: string, retryAfterS: number, headers: Record<string, string> = {}): EdgeError {
  const retry = String(Math.max(1, Math.ceil(retryAfterS)));
  return { status: 429, type: "requests", code: "rate_limit_exceeded", message, headers: { "retry-after": retry, ...headers } };
}

// --- configuration from the Worker's vars ------------------------------------------------------------

export type KeyCacheMode = "off" | "revoked" | "strict";

export type EdgeConfig = {
  instances: number;
  maxBodyBytes: number;
  corsOrigins: "*" | string[]; // [] : no origin allowed (a request with an Origin header is refused)
  keyCache: KeyCacheMode;
  shield: boolean;
  keyRpm: number; // per key per window when the key has no rpm of its own; 0: off
  windowMs: number;
  usageD1: boolean;
  localUpstream: string | null;
};

export type Vars = Record<string, string | undefined>;

function int(value: string | undefined, fallback: number, min = 0): number {
  const n = value === undefined || value.trim() === "" ? fallback : Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`expected an integer >= ${min}, got ${JSON.stringify(value)}`);
  return n;
}

function on(value: string | undefined, fallback: boolean): boolean {
  if (value === undefined || value.trim() === "") return fallback;
  const v = value.trim().toLowerCase();
  if (["1", "true", "on", "yes"].includes(v)) return true;
  if (["0", "false", "off", "no"].includes(v)) return false;
  throw new Error(`expected on/off, got ${JSON.stringify(value)}`);
}

export function parseConfig(vars: Vars): EdgeConfig {
  const cors = (vars.CORS_ORIGINS ?? "").trim();
  const mode = (vars.EDGE_KEY_CACHE ?? "strict").trim() as KeyCacheMode;
  if (!["off", "revoked", "strict"].includes(mode)) throw new Error(`EDGE_KEY_CACHE must be off, revoked or strict`);
  const upstream = (vars.LOCAL_UPSTREAM ?? "").trim();
  return {
    instances: int(vars.INSTANCES, 1, 1),
    maxBodyBytes: int(vars.MAX_BODY_BYTES, 32 * 1024 * 1024, 1024),
    corsOrigins: cors === "*" ? "*" : cors.split(",").map((o) => o.trim()).filter((o) => o !== ""),
    keyCache: mode,
    shield: on(vars.EDGE_SHIELD, true),
    keyRpm: int(vars.EDGE_KEY_RPM, 0),
    windowMs: int(vars.EDGE_WINDOW_SECONDS, 60, 1) * 1000,
    usageD1: on(vars.EDGE_USAGE_D1, true),
    localUpstream: upstream === "" ? null : upstream.replace(/\/+$/, ""),
  };
}

// --- credentials -----------------------------------------------------------------------------------

export type Credential = { kind: "none" } | { kind: "malformed" } | { kind: "token"; token: string };

const TOKEN = /^[\x21-\x7e]{1,4096}$/; // printable ASCII, no spaces: every key, master key and JWT fits

// As lockgate/auth credential_from: `Authorization: Bearer …`, else `x-api-key`; a shape it cannot use is malformed.
export function credentialFrom(headers: Headers): Credential {
  const auth = headers.get("authorization");
  if (auth !== null) {
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(auth);
    if (m === null || !TOKEN.test(m[1])) return { kind: auth.trim() === "" ? "none" : "malformed" };
    return { kind: "token", token: m[1] };
  }
  const key = headers.get("x-api-key");
  if (key === null || key.trim() === "") return { kind: "none" };
  return TOKEN.test(key.trim()) ? { kind: "token", token: key.trim() } : { kind: "malformed" };
}

export function isVirtualKey(token: string): boolean {
  return token.startsWith("lg-");
}

export function looksLikeJwt(token: string): boolean {
  return token.split(".").length === 3;
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// Equal-length strings compared without an early exit (the internal token).
export function sameSecret(a: string, b: string): boolean {
  if (a.length !== b.length || a.length === 0) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

// --- the KV key cache --------------------------------------------------------------------------------

// What Lockgate writes to KV under `key:<sha256 of the key>` (lockgate/edge_keys.py).
export type KeyEntry = { id: string; revoked: boolean; expires_at: number | null; rpm: number | null };

export const kvName = (hash: string): string => `key:${hash}`;

// The edge's verdict on a virtual key from its KV entry (null: not in KV, as far as this location knows).
export function judgeKey(entry: KeyEntry | null, mode: KeyCacheMode, nowS: number): EdgeError | null {
  if (mode === "off") return null;
  if (entry === null) return mode === "strict" ? BAD_KEY : null;
  if (entry.revoked) return REVOKED_KEY;
  if (entry.expires_at !== null && nowS >= entry.expires_at) return EXPIRED_KEY;
  return null;
}

export type KeyEvent = {
  type: "upsert" | "revoke";
  key_hash: string;
  key_id: string;
  expires_at?: number | null;
  rpm?: number | null;
};

const HASH = /^[0-9a-f]{64}$/;

// One event to the KV write it makes; null for an event that is not well formed.
export function kvWrite(event: KeyEvent): { name: string; value: KeyEntry } | null {
  if (!event || !HASH.test(String(event.key_hash)) || typeof event.key_id !== "string" || event.key_id === "") return null;
  if (event.type !== "upsert" && event.type !== "revoke") return null;
  const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
  return {
    name: kvName(event.key_hash),
    value: { id: event.key_id, revoked: event.type === "revoke", expires_at: num(event.expires_at), rpm: num(event.rpm) },
  };
}

// --- choosing an instance ------------------------------------------------------------------------

// FNV-1a over the key's hash (or the client's address): one key's requests reach one instance, whose
// in-process caches (key, team, limiter when memory-backed) then stay warm.
export function instanceFor(affinity: string, instances: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < affinity.length; i++) {
    h ^= affinity.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % instances;
}

// --- CORS ----------------------------------------------------------------------------------------

export function originAllowed(origin: string, allowed: EdgeConfig["corsOrigins"]): boolean {
  return allowed === "*" || allowed.includes(origin);
}

export function corsHeaders(origin: string, allowed: EdgeConfig["corsOrigins"]): Record<string, string> {
  return {
    "access-control-allow-origin": allowed === "*" ? "*" : origin,
    "access-control-expose-headers": "x-request-id, x-edge-request-id, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests",
    ...(allowed === "*" ? {} : { vary: "Origin" }),
  };
}

export function preflightHeaders(origin: string, allowed: EdgeConfig["corsOrigins"], requested: string | null): Record<string, string> {
  return {
    ...corsHeaders(origin, allowed),
    "access-control-allow-methods": "GET, POST, PATCH, DELETE, OPTIONS",
    "access-control-allow-headers": requested ?? "authorization, content-type, x-api-key, anthropic-version, openai-beta",
    "access-control-max-age": "600",
  };
}

// --- the exact sliding window (the KeyWindow Durable Object keeps `hits`) --------------------------

export type Verdict = { ok: boolean; remaining: number; retryAfterMs: number; hits: number[] };

// A log of the last `limit` admissions: a request is admitted when fewer than `limit` fall in the
// window ending now. Exact, because one Durable Object sees every request of its key, one at a time.
export function slide(hits: number[], nowMs: number, limit: number, windowMs: number): Verdict {
  const live = hits.filter((t) => t > nowMs - windowMs);
  if (live.length >= limit) {
    const oldest = live[live.length - limit];
    return { ok: false, remaining: 0, retryAfterMs: oldest + windowMs - nowMs, hits: live };
  }
  live.push(nowMs);
  return { ok: true, remaining: limit - live.length, retryAfterMs: 0, hits: live.slice(-limit) };
}

// --- usage rows into D1 --------------------------------------------------------------------------

// The columns of Lockgate's usage_records (lockgate/usage/tables.py), in order; migrations/0001_usage.sql.
export const USAGE_COLUMNS = [
  "request_id", "parent_request_id", "attempt", "started_at", "endpoint", "model", "key_id", "user_id", "team",
  "provider", "deployment", "upstream_model", "status", "error_type", "error_message", "streamed", "partial",
  "usage_estimated", "attempts", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_creation_tokens",
  "reasoning_tokens", "cost_usd", "cost_unknown", "latency_ms", "ttft_ms",
] as const;

const REQUIRED = new Set(["request_id", "started_at", "endpoint", "status"]);

export const INSERT_USAGE = `INSERT OR IGNORE INTO usage_records (${USAGE_COLUMNS.join(", ")}) VALUES (${USAGE_COLUMNS.map(() => "?").join(", ")})`;

type Bindable = string | number | null;

// One record's values in column order (booleans as 0/1, as SQLite keeps them); an Error names what is wrong.
export function usageValues(record: Record<string, unknown>): Bindable[] | Error {
  if (record === null || typeof record !== "object") return new Error("a record must be an object");
  const out: Bindable[] = [];
  for (const col of USAGE_COLUMNS) {
    const v = record[col];
    if (v === undefined || v === null) {
      if (REQUIRED.has(col)) return new Error(`record lacks ${col}`);
      out.push(null);
    } else if (typeof v === "boolean") out.push(v ? 1 : 0);
    else if (typeof v === "number" || typeof v === "string") out.push(v);
    else return new Error(`record field ${col} has an unsupported type`);
  }
  return out;
}
