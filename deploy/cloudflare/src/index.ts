// Lockgate at the edge (docs/cloudflare.md): every request arrives here, is checked with what the edge
// can check cheaply (body size, credential shape, origin, a coarse per-client shield, the KV key cache,
// an exact per-key window in a Durable Object), and is then handed to one of INSTANCES Lockgate
// containers; the answer is relayed as it comes (an SSE stream chunk by chunk, never buffered).
// Lockgate calls back into the Worker through http://lockgate-edge.internal (intercepted by the
// container class below, so the route exists only for the container): usage batches into D1 and
// key events into KV.
import { Container } from "@cloudflare/containers";
import { DurableObject } from "cloudflare:workers";
import {
  BAD_KEY,
  NO_KEY,
  INSERT_USAGE,
  corsHeaders,
  credentialFrom,
  dialectFor,
  errorResponse,
  instanceFor,
  isVirtualKey,
  judgeKey,
  kvWrite,
  looksLikeJwt,
  originAllowed,
  originRefused,
  parseConfig,
  preflightHeaders,
  rateLimited,
  sameSecret,
  sha256Hex,
  slide,
  tooLarge,
  usageValues,
  type EdgeConfig,
  type KeyEntry,
  type KeyEvent,
  type Verdict,
} from "./edge.ts";

export { ContainerProxy } from "@cloudflare/containers";

export interface Env {
  GATEWAY: DurableObjectNamespace<Gateway>;
  KEY_WINDOW: DurableObjectNamespace<KeyWindow>;
  KEYS: KVNamespace;
  USAGE_DB: D1Database;
  SHIELD: RateLimit;
  // vars (wrangler.jsonc) and secrets (wrangler secret put)
  [name: string]: unknown;
}

// The host the container reaches the Worker on; it resolves nowhere else (docs/cloudflare.md, "Internal routes").
// Not exported: workerd takes every export of the entry module for an entrypoint.
const INTERNAL_HOST = "lockgate-edge.internal";
const LOCAL_INTERNAL_PREFIX = "/__lockgate-edge"; // only with LOCAL_UPSTREAM (wrangler dev), token-checked
// Secrets and settings the container gets as its environment when it starts (a running one keeps its own).
const CONTAINER_ENV = [
  "LOCKGATE_CONFIG_YAML",
  "LOCKGATE_MASTER_KEY",
  "LOCKGATE_DATABASE_URL",
  "LOCKGATE_REDIS_URL",
  "LOCKGATE_MIGRATE_ON_START",
  "LOCKGATE_DRAIN_SECONDS",
  "OPENAI_API_KEY",
  "ANTHROPIC_API_KEY",
  "EDGE_INTERNAL_TOKEN",
];
const PUBLIC_PATHS = new Set(["/health/live", "/health/ready"]);

function vars(env: Env): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) if (typeof v === "string") out[k] = v;
  return out;
}

let cached: { source: Env; config: EdgeConfig; masterHash: Promise<string | null> } | null = null;

// Parsed once per isolate (the env object is the same for its life), not per request.
function settings(env: Env): { config: EdgeConfig; masterHash: Promise<string | null> } {
  if (cached === null || cached.source !== env) {
    const master = typeof env.LOCKGATE_MASTER_KEY === "string" && env.LOCKGATE_MASTER_KEY !== "" ? env.LOCKGATE_MASTER_KEY : null;
    cached = { source: env, config: parseConfig(vars(env)), masterHash: master === null ? Promise.resolve(null) : sha256Hex(master) };
  }
  return cached;
}

// --- the Lockgate container ------------------------------------------------------------------------

export class Gateway extends Container<Env> {
  defaultPort = 8080;
  sleepAfter = "15m";
  pingEndpoint = "localhost/health/live";
  enableInternet = true; // providers, hosted PostgreSQL and Redis

  static outboundByHost = {
    [INTERNAL_HOST]: (request: Request, env: Env) => internal(request, env),
  };

  constructor(ctx: DurableObject["ctx"], env: Env) {
    super(ctx, env);
    const out: Record<string, string> = {
      LOCKGATE_EDGE_URL: `http://${INTERNAL_HOST}`,
      // Only the Worker reaches the container: its X-Forwarded-For (the real client) is to be trusted.
      FORWARDED_ALLOW_IPS: "*",
    };
    for (const name of CONTAINER_ENV) {
      const value = env[name];
      if (typeof value === "string" && value !== "") out[name] = value;
    }
    this.envVars = out;
  }
}

// --- the exact per-key sliding window ----------------------------------------------------------------

export class KeyWindow extends DurableObject<Env> {
  private hits: number[] = [];

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // Kept in the object's storage too: an evicted object must not forget the requests of its window.
    ctx.blockConcurrencyWhile(async () => {
      this.hits = (await ctx.storage.get<number[]>("hits")) ?? [];
    });
  }

  async admit(limit: number, windowMs: number): Promise<Verdict> {
    const verdict = slide(this.hits, Date.now(), limit, windowMs);
    this.hits = verdict.hits;
    if (verdict.ok) await this.ctx.storage.put("hits", this.hits);
    return verdict;
  }
}

// --- internal routes: usage into D1, key events into KV ------------------------------------------

async function internal(request: Request, env: Env): Promise<Response> {
  const token = typeof env.EDGE_INTERNAL_TOKEN === "string" ? env.EDGE_INTERNAL_TOKEN : "";
  const given = (request.headers.get("authorization") ?? "").replace(/^Bearer\s+/i, "");
  if (!sameSecret(given, token)) return json({ error: "forbidden" }, 403);
  if (request.method !== "POST") return json({ error: "method not allowed" }, 405);
  const path = new URL(request.url).pathname.replace(LOCAL_INTERNAL_PREFIX, "");
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    return json({ error: "body is not JSON" }, 400);
  }
  if (path === "/usage") return usage(body, env);
  if (path === "/key-events") return keyEvents(body, env);
  return json({ error: "not found" }, 404);
}

async function usage(body: unknown, env: Env): Promise<Response> {
  if (!settings(env).config.usageD1) return json({ error: "usage in D1 is off (EDGE_USAGE_D1)" }, 404);
  const records = (body as { records?: unknown }).records;
  if (!Array.isArray(records)) return json({ error: "expected {records: [...]}" }, 400);
  const statement = env.USAGE_DB.prepare(INSERT_USAGE);
  const bound = [];
  for (const record of records) {
    const values = usageValues(record as Record<string, unknown>);
    if (values instanceof Error) return json({ error: values.message }, 400);
    bound.push(statement.bind(...values));
  }
  // One batch is one transaction; INSERT OR IGNORE on the request_id key makes a replay count once.
  const results = bound.length ? await env.USAGE_DB.batch(bound) : [];
  const inserted = results.reduce((n, r) => n + (r.meta.changes ?? 0), 0);
  return json({ accepted: records.length, inserted });
}

async function keyEvents(body: unknown, env: Env): Promise<Response> {
  const events = (body as { events?: unknown }).events;
  if (!Array.isArray(events)) return json({ error: "expected {events: [...]}" }, 400);
  const writes = [];
  for (const event of events) {
    const write = kvWrite(event as KeyEvent);
    if (write === null) return json({ error: "malformed key event" }, 400);
    writes.push(write);
  }
  // In order: a rotation's revoke of the old hash and upsert of the new one are separate names anyway.
  for (const w of writes) await env.KEYS.put(w.name, JSON.stringify(w.value));
  return json({ written: writes.length });
}

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
}

// --- the public front --------------------------------------------------------------------------------

function clientAddress(request: Request): string {
  return request.headers.get("cf-connecting-ip") ?? "0.0.0.0";
}

async function front(request: Request, env: Env): Promise<Response> {
  const { config, masterHash } = settings(env);
  const url = new URL(request.url);
  if (config.localUpstream !== null && url.pathname.startsWith(`${LOCAL_INTERNAL_PREFIX}/`)) return internal(request, env);
  const dialect = dialectFor(url.pathname);
  const edgeId = request.headers.get("cf-ray") ?? crypto.randomUUID();

  // Origins, and preflights answered here (no container woken for them).
  const origin = request.headers.get("origin");
  let cors: Record<string, string> = {};
  if (origin !== null) {
    if (!originAllowed(origin, config.corsOrigins)) return errorResponse(originRefused(origin), {}, dialect, edgeId);
    if (request.method === "OPTIONS" && request.headers.has("access-control-request-method")) {
      const headers = preflightHeaders(origin, config.corsOrigins, request.headers.get("access-control-request-headers"));
      return new Response(null, { status: 204, headers });
    }
    cors = corsHeaders(origin, config.corsOrigins);
  }
  const refuse = (err: Parameters<typeof errorResponse>[0]) => errorResponse(err, { ...cors, "x-edge-request-id": edgeId }, dialect, edgeId);

  // Body size from Content-Length (Lockgate checks a chunked body's real size itself).
  const length = Number(request.headers.get("content-length") ?? "0");
  if (Number.isFinite(length) && length > config.maxBodyBytes) return refuse(tooLarge(config.maxBodyBytes));

  const client = clientAddress(request);
  // The coarse shield per client address: approximate, per Cloudflare location, cheap.
  if (config.shield) {
    const { success } = await env.SHIELD.limit({ key: client });
    if (!success) return refuse(rateLimited("Too many requests from this address.", 60));
  }

  let affinity = client;
  let windowKey: string | null = null;
  let keyRpm: number | null = null;
  if (!PUBLIC_PATHS.has(url.pathname)) {
    const credential = credentialFrom(request.headers);
    if (credential.kind === "none") return refuse(NO_KEY);
    if (credential.kind === "malformed") return refuse(BAD_KEY);
    const token = credential.token;
    const hash = await sha256Hex(token);
    affinity = hash;
    if (isVirtualKey(token)) {
      let entry: KeyEntry | null = null;
      if (config.keyCache !== "off") {
        entry = await env.KEYS.get<KeyEntry>(`key:${hash}`, { type: "json", cacheTtl: 60 });
        const verdict = judgeKey(entry, config.keyCache, Date.now() / 1000);
        if (verdict !== null) return refuse(verdict);
      }
      windowKey = entry?.id ?? hash;
      keyRpm = entry?.rpm ?? null;
    } else if (config.keyCache === "strict" && hash !== (await masterHash) && !looksLikeJwt(token)) {
      return refuse(BAD_KEY); // neither a virtual key, the master key nor a JWT: Lockgate would say the same
    }
  }

  // The exact window per virtual key, shared by every instance (deployments without Redis).
  const limit = keyRpm ?? config.keyRpm;
  const rateHeaders: Record<string, string> = {};
  if (windowKey !== null && limit > 0) {
    const verdict = await env.KEY_WINDOW.getByName(windowKey).admit(limit, config.windowMs);
    rateHeaders["x-edge-ratelimit-limit"] = String(limit);
    rateHeaders["x-edge-ratelimit-remaining"] = String(verdict.remaining);
    if (!verdict.ok) {
      return refuse(rateLimited(`Rate limit reached for this key: ${limit} requests per ${config.windowMs / 1000} s.`, verdict.retryAfterMs / 1000, rateHeaders));
    }
  }

  // Forward: the client's address and an edge request id travel with it.
  const headers = new Headers(request.headers);
  headers.set("x-forwarded-for", client);
  headers.set("x-real-ip", client);
  headers.set("x-forwarded-proto", url.protocol.replace(":", ""));
  headers.set("x-edge-request-id", edgeId);
  const init: RequestInit = { method: request.method, headers, body: request.body, redirect: "manual" };
  let upstream: Response;
  if (config.localUpstream !== null) {
    upstream = await fetch(`${config.localUpstream}${url.pathname}${url.search}`, init);
  } else {
    const instance = instanceFor(affinity, config.instances);
    upstream = await env.GATEWAY.getByName(`lockgate-${instance}`).fetch(new Request(request.url, init));
  }
  // The body is passed on as a stream: an SSE answer reaches the client event by event.
  const out = new Headers(upstream.headers);
  for (const [k, v] of Object.entries({ ...cors, ...rateHeaders, "x-edge-request-id": edgeId })) out.set(k, v);
  return new Response(upstream.body, { status: upstream.status, statusText: upstream.statusText, headers: out });
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    try {
      return await front(request, env);
    } catch (err) {
      // Never a stack trace to the client; the message is for `wrangler tail`.
      console.error("edge_failed", err instanceof Error ? err.message : String(err));
      const dialect = dialectFor(new URL(request.url).pathname);
      return errorResponse({ status: 502, type: "api_error", code: "edge_upstream_unavailable", message: "The gateway could not be reached." }, {}, dialect);
    }
  },
} satisfies ExportedHandler<Env>;
