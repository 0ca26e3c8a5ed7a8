"""One validated model of lockgate.yaml, with ${VAR} / ${VAR:-default} interpolation.

Loading is strict: unknown keys are errors (a typo must not silently change
behaviour) and every error names the field and its place, e.g.
``models[0].deployments[1].provider: Input should be 'openai', 'anthropic' or 'mock'``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

# A fixed key for the embedded default on loopback only, so the README's curl works as written.
DEV_MASTER_KEY = "sk-lockgate-dev"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration that cannot be served; the message says what and where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ProviderName = Literal["openai", "anthropic", "mock"]


class DeploymentBase(_Strict):
    """What every deployment has, whatever its provider (the subclasses below add their own)."""

    provider: ProviderName = Field(description="The upstream's protocol")
    model: str = Field(min_length=1, description="The upstream's model id")
    id: str | None = Field(default=None, description="A name for logs and headers; derived when absent")
    api_base: str | None = Field(default=None, description="The upstream's base URL; the provider's own when absent")
    api_key: SecretStr | None = Field(default=None, description="The upstream's key")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers sent upstream")
    # Timeouts in seconds, per attempt (docs/routing.md, "Timeouts"). A stream is never
    # capped by timeout_s once its first event arrived, only by its idle gaps and,
    # when set, max_stream_duration_s.
    connect_timeout_s: float = Field(default=10.0, gt=0, description="TCP connect and TLS handshake")
    timeout_s: float = Field(default=600.0, gt=0, description="A whole non-streamed answer; a stream's first event")
    first_byte_timeout_s: float | None = Field(default=None, gt=0, description="A stream's first event; timeout_s when absent")
    stream_idle_timeout_s: float = Field(default=120.0, gt=0, description="Longest silence after a stream's first event")
    max_stream_duration_s: float | None = Field(default=None, gt=0, description="A whole stream; no cap when absent")
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Pooled connections to this upstream (one pool for deployments with the same api_base and pool settings)",
    )
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        description="The model's output limit: a larger translated max_tokens (Messages, Responses) is clamped to it",
    )
    # Size caps on what the upstream sends back (docs/limits.md): past them the answer is cut, 502.
    max_response_bytes: int = Field(default=128 * 1024 * 1024, ge=1024, description="A non-streamed answer's body, decompressed")
    max_stream_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, description="A whole stream's body, decompressed")
    # Routing.
    weight: float = Field(default=1.0, ge=0, description="Share of traffic under the weighted strategy")
    priority: int = Field(default=0, description="Lower is tried first under the priority strategy")
    # Prices in USD per million tokens; built-in table when absent (resolved once: usage/pricing.py).
    input_cost_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million input tokens; the built-in price table when absent"
    )
    output_cost_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million output tokens; the built-in price table when absent"
    )
    cached_input_cost_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million cached input tokens; the built-in price table when absent"
    )
    cache_write_cost_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million cache-write tokens; the built-in price table when absent"
    )

    def display_id(self, index: int) -> str:
        return self.id or f"{self.provider}/{self.model}#{index}"


class OpenAIDeployment(DeploymentBase):
    """An OpenAI-protocol upstream (OpenAI, Azure, Groq, vLLM, ...)."""

    provider: Literal["openai"]
    # Always ask for the usage chunk of a stream; off for servers that reject stream_options.
    stream_usage: bool = True
    # How /v1/responses is served here: translated through chat (any OpenAI-compatible server), or
    # passed through to the upstream's own /v1/responses (OpenAI itself; docs/responses.md).
    responses: Literal["translated", "native"] = "translated"


class AnthropicDeployment(DeploymentBase):
    """An Anthropic Messages API upstream."""

    provider: Literal["anthropic"]
    max_tokens_default: int = Field(default=4096, ge=1, description="max_tokens when the caller sets none")
    anthropic_version: str = Field(default="2023-06-01", description="The `anthropic-version` header sent upstream")
    anthropic_beta: str | None = Field(default=None, description="The `anthropic-beta` header sent upstream, when set")


class MockDeployment(DeploymentBase):
    """The mock provider: a deterministic reply for demos and load tests of client apps."""

    provider: Literal["mock"]
    mock_response: str | None = Field(default=None, description="Fixed reply; default echoes the prompt")
    mock_latency_ms: float = Field(default=0.0, ge=0, description="Delay before the first token")
    mock_tokens_per_s: float = Field(default=0.0, ge=0, description="Stream pacing; 0 = as fast as possible")
    mock_embedding_dims: int = Field(default=256, ge=1, le=8192, description="Dimensions of a mock embedding")


# Discriminated on `provider`: a field of another provider is an unknown field, like any typo.
Deployment = Annotated[OpenAIDeployment | AnthropicDeployment | MockDeployment, Field(discriminator="provider")]
PROVIDERS: tuple[str, ...] = get_args(ProviderName)


Strategy = Literal["priority", "cost", "latency", "weighted", "least-busy"]


class ModelLimits(_Strict):
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute")
    rpd: int | None = Field(default=None, ge=1, description="Requests per day")
    tpd: int | None = Field(default=None, ge=1, description="Tokens per day")
    max_parallel_requests: int | None = Field(default=None, ge=1, description="Requests in flight at once")


class ModelGroup(_Strict):
    """A public model name and the deployments behind it."""

    name: str = Field(min_length=1, description="The public model name clients send")
    deployments: list[Deployment] = Field(min_length=1, description="The upstreams that serve this name")
    strategy: Strategy = Field(default="priority", description="How a deployment is chosen (docs/routing.md)")
    fallbacks: list[str] = Field(
        default_factory=list, description="Other model names tried, in order, when every deployment failed"
    )
    limits: ModelLimits | None = Field(default=None, description="Limits on this model, across every key")
    # Resume a broken stream on the next deployment with what was delivered as a prefix.
    stream_resume: bool = False
    owned_by: str | None = Field(default=None, description="`owned_by` in /v1/models")


class Backoff(_Strict):
    base_s: float = Field(default=0.25, ge=0, description="First wait; doubles each attempt")
    max_s: float = Field(default=8.0, ge=0, description="Longest wait")
    jitter: Literal["full", "none"] = Field(default="full", description="full: a random wait up to the computed one")


# Where a feature keeps its state: this process alone, or the Redis of the `redis:` section (shared by replicas).
Backend = Literal["memory", "redis"]


class Cooldown(_Strict):
    failures: int = Field(default=3, ge=1, description="Failures within window_s that cool a deployment down")
    window_s: float = Field(default=60.0, gt=0, description="The window the failures are counted in")
    cooldown_s: float = Field(default=30.0, ge=0, description="How long a cooled-down deployment is skipped")
    backend: Backend = Field(default="memory", description="redis: cool-downs shared by every replica")


class RouterConfig(_Strict):
    max_attempts: int = Field(default=3, ge=1, description="Attempts per request, across deployments")
    backoff: Backoff = Field(default=Backoff(), description="The wait between attempts")
    deadline_s: float = Field(default=120.0, gt=0, description="Longest a request spends on retries")
    cooldown: Cooldown = Field(default=Cooldown(), description="When a failing deployment is skipped for a while")


class JWTClaims(_Strict):
    user: str = Field(default="sub", description="Claim naming the user")
    team: str | None = Field(default=None, description="Claim naming the team")
    models: str | None = Field(default=None, description="Claim listing the models the token may use")
    admin_role: str | None = Field(default=None, description="Claim that, when true, makes the token an admin")


class JWTConfig(_Strict):
    issuer: str | None = Field(default=None, description="Required `iss` claim, when set")
    audience: str | None = Field(default=None, description="Required `aud` claim, when set")
    jwks_url: str | None = Field(default=None, description="Where the RS256/ES256 public keys are fetched")
    hs256_secret: SecretStr | None = Field(default=None, description="Shared secret for HS256 tokens")
    claims: JWTClaims = Field(default=JWTClaims(), description="Which claims carry the identity")
    leeway_s: float = Field(default=30.0, ge=0, description="Clock skew allowed on exp / nbf")
    jwks_cache_ttl_s: float = Field(default=300.0, gt=0, description="Refresh the JWKS this often")
    # A token with an unknown kid refetches the JWKS, but no more often than this (forged kids can't flood the IdP).
    jwks_min_refetch_interval_s: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _one_key_source(self) -> "JWTConfig":
        if not self.jwks_url and not self.hs256_secret:
            raise ValueError("jwt needs jwks_url or hs256_secret")
        return self


class KeyEventsConfig(_Strict):
    """Key changes POSTed to an edge's key cache (lockgate/edge_keys.py, docs/cloudflare.md)."""

    url: str = Field(min_length=1, description="http(s) URL taking {events: [...]}")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Sent with every POST (e.g. Authorization)")
    timeout_s: float = Field(default=5.0, gt=0, description="Longest wait for one POST")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest back-off between failed POSTs")
    max_queued: int = Field(
        default=10_000, ge=1, description="Events held while the edge is unreachable; more are dropped, logged"
    )


class AuthConfig(_Strict):
    master_key: SecretStr | None = Field(
        default=None, description="The admin key: admin API and inference, compared in constant time"
    )
    key_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a replica may keep using what it read about a key or team"
    )
    jwt: JWTConfig | None = Field(default=None, description="Accept JWTs from your identity provider (docs/keys.md)")
    # Failed authentications per client address per minute before 429.
    max_failures_per_minute: int = Field(default=30, ge=1)
    key_events: KeyEventsConfig | None = Field(
        default=None, description="Key changes POSTed to an edge's key cache; off when absent"
    )


class DatabaseConfig(_Strict):
    url: str = Field(default="sqlite:///lockgate.db", description="sqlite:///path or postgresql://user@host:5432/db")


class HttpSinkConfig(_Strict):
    """Every usage record also POSTed, in JSON batches, to a receiver (usage/http_sink.py, docs/usage.md)."""

    url: str = Field(min_length=1, description="http(s) URL that takes {records: [...]} batches")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Sent with every batch (e.g. Authorization)")
    batch_size: int = Field(default=100, ge=1, le=2000, description="Records per POST")
    flush_interval_s: float = Field(default=1.0, gt=0, description="Longest a record waits before a POST")
    timeout_s: float = Field(default=10.0, gt=0, description="A slower POST is spooled (and later replayed)")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest back-off between failed POSTs")
    spool_dir: str | None = Field(default=None, description="Its own durable spool; <usage.spool_dir>/http when absent")
    max_buffered: int = Field(default=2000, ge=1, description="Records held in memory while the receiver lags; more are spooled")

    @field_validator("url")
    @classmethod
    def _http_scheme(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url


class UsageConfig(_Strict):
    """The usage writer: records go to the database in batches, to a local spool when it is down."""

    enabled: bool = Field(default=True, description="Record every request's usage and cost")
    batch_size: int = Field(default=200, ge=1, le=2000, description="Records per database write")
    flush_interval_s: float = Field(default=1.0, gt=0, description="Longest a record waits before a write")
    write_timeout_s: float = Field(default=5.0, gt=0, description="A slower write is spooled instead")
    spool_dir: str = Field(default="lockgate-spool", description="Durable spool of unwritten batches")
    max_buffered: int = Field(
        default=2000, ge=1, description="Records held in memory while the database lags; more go to the spool (never dropped)"
    )
    http_sink: HttpSinkConfig | None = Field(
        default=None, description="Usage records POSTed to an HTTP endpoint; off when absent"
    )


class ResponsesConfig(_Strict):
    """Stored Responses (`store: true`, the table `responses`): how long they are kept."""

    retention_days: int = Field(
        default=30, ge=0, description="A stored response older than this is deleted by a background purge; 0 keeps them forever"
    )
    purge_interval_s: float = Field(default=3600.0, gt=0, description="How often the purge runs (and once at start-up)")
    purge_batch_size: int = Field(default=500, ge=1, le=10_000, description="Rows deleted per transaction")


class RateLimitDefaults(_Strict):
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute")
    max_parallel_requests: int | None = Field(default=None, ge=1, description="Requests in flight at once, per key")


class RateLimitConfig(_Strict):
    backend: Backend = Field(default="memory", description="The limiter only; budgets and cool-downs say their own")
    defaults: RateLimitDefaults = Field(default=RateLimitDefaults(), description="Limits for a key that sets none")
    default_max_tokens: int = Field(default=1024, ge=0, description="Token estimate when max_tokens is absent")
    parallel_lease_s: float = Field(
        default=900.0, gt=0, description="Redis: a request's max_parallel_requests slot expires after this (crashed gateway)"
    )
    # Limits shared by every key of a team or a user.
    teams: dict[str, ModelLimits] = Field(default_factory=dict)
    users: dict[str, ModelLimits] = Field(default_factory=dict, description="Limits shared by every key of a user")


class BudgetsConfig(_Strict):
    backend: Backend = Field(default="memory", description="redis: spend counters shared by every replica")
    default_output_tokens: int = Field(default=1024, ge=0, description="Output tokens reserved when a request sets no max_tokens")
    reservation_ttl_s: float = Field(
        default=900.0, gt=0, description="Redis: a request's reserved cost expires after this (crashed gateway)"
    )
    strict: bool = Field(
        default=False, description="Refuse a request whose own estimated cost would pass the budget (not only a used one)"
    )


class RedisConfig(_Strict):
    """The one Redis client (lockgate/redis_client.py) of every feature whose backend is redis."""

    url: str = Field(default="redis://127.0.0.1:6379/0", description="redis://, rediss:// or unix://")
    timeout_s: float = Field(default=0.25, gt=0, description="Longest wait for Redis' answer to one call")
    connect_timeout_s: float = Field(default=0.25, gt=0, description="Longest wait to open a connection")
    max_connections: int = Field(default=64, ge=1, description="Connection pool size; a call waits for a free one")
    # Keys start with this (then rl:, budget:, cd:), so gateways can share a Redis or keep apart.
    key_prefix: str = "lockgate:"
    # When Redis fails on the request path: allow (fail open: unmetered, counted) or deny (503).
    on_error: Literal["allow", "deny"] = "allow"

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return url


class PostHogConfig(_Strict):
    api_key: SecretStr | None = Field(default=None, description="The project key; analytics are off without one")
    host: str = Field(default="https://us.i.posthog.com", description="The PostHog instance")
    privacy_mode: bool = Field(default=True, description="Send no prompt or completion text")
    # The client's batching: a batch leaves at flush_at events or every flush_interval_s.
    flush_at: int = Field(default=100, ge=1)
    flush_interval_s: float = Field(default=5.0, gt=0, description="A batch leaves at least this often")
    max_queue_size: int = Field(default=10_000, ge=1, description="Events buffered before new ones are dropped")
    gzip: bool = Field(default=True, description="Compress batches")
    max_retries: int = Field(default=3, ge=0, description="Retries of a failed batch")
    timeout_s: float = Field(default=10.0, gt=0, description="Longest wait for one batch upload")
    shutdown_timeout_s: float = Field(default=5.0, ge=0, description="Longest wait to flush at shutdown")


class TelemetryConfig(_Strict):
    log_format: Literal["json", "console"] = Field(default="json", description="json lines, or console for people")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Lowest level logged")
    access_log: bool = Field(default=True, description="One log line per request")
    metrics: bool = Field(default=True, description="Serve Prometheus /metrics")
    otlp_endpoint: str | None = Field(default=None, description="OpenTelemetry collector for traces; no tracing when absent")


class CorsConfig(_Strict):
    """Cross-origin access for browser apps (docs/limits.md#cors); absent: no CORS header, preflights 405."""

    # Exact origins ("https://app.example.com"), "*" (any), or a subdomain wildcard ("https://*.example.com").
    allow_origins: list[str] = Field(min_length=1)
    allow_origin_regex: str | None = Field(default=None, description="An origin matching it whole is allowed too")
    allow_methods: list[str] = Field(
        default_factory=lambda: ["GET", "POST", "DELETE", "PATCH"], description="Methods a preflight may allow"
    )
    # "*" echoes what the preflight asks for; names may end in * ("x-stainless-*").
    allow_headers: list[str] = Field(default_factory=lambda: ["*"])
    # Response headers a page's script may read; names may end in * (matched against each response).
    expose_headers: list[str] = Field(default_factory=lambda: ["x-request-id", "x-ratelimit-*", "retry-after", "x-lockgate-*"])
    max_age_s: int = Field(default=600, ge=0, description="How long a browser may cache a preflight's answer")
    allow_credentials: bool = Field(default=False, description="Let pages send cookies and credentials")

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not re.fullmatch(r"[a-z][a-z0-9+.-]*://(\*\.)?[^/*\s]+", origin, re.IGNORECASE):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], no path; '*' or '*.' before the host)")
        return origins

    @field_validator("allow_origin_regex")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"not a regular expression: {err}") from None
        return pattern

    @model_validator(mode="after")
    def _no_credentials_for_everyone(self) -> "CorsConfig":
        # Browsers refuse "*" with credentials; echoing any origin instead would hand every site the caller's cookies.
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials cannot be combined with the wildcard origin '*'; list the origins")
        probe = "https://lockgate-cors-probe.invalid"  # an origin nobody owns: a regex matching it matches anything
        if self.allow_credentials and self.allow_origin_regex and re.fullmatch(self.allow_origin_regex, probe, re.IGNORECASE):
            raise ValueError("allow_credentials cannot be combined with an allow_origin_regex that matches any origin")
        return self


class ServerConfig(_Strict):
    host: str = Field(default="127.0.0.1", description="Address to listen on (`lockgate serve --host` overrides)")
    port: int = Field(default=4000, ge=0, le=65535, description="Port to listen on (`--port` overrides)")
    workers: int = Field(default=1, ge=1, description="Worker processes (`--workers` overrides)")
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest request body accepted; a larger one gets 413"
    )
    # Limits on what a client may send (docs/limits.md), enforced by the HTTP protocol (lockgate/http_server.py).
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="The request line and headers together; past it 431")
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="From a new connection's (or request's) first byte to its last header; past it 408"
    )
    body_timeout_s: float = Field(default=60.0, gt=0, description="From the last header to the body's last byte; past it 408")
    cors: CorsConfig | None = Field(default=None, description="Cross-origin access for browser apps; none when absent")
    hsts_max_age_s: int | None = Field(
        default=None, ge=0, description="Send Strict-Transport-Security with this max-age (behind TLS only)"
    )
    hsts_include_subdomains: bool = Field(default=False, description="Add includeSubDomains to Strict-Transport-Security")
    sse_ping_interval_s: float = Field(
        default=15.0, gt=0, le=60, description="A /v1/messages stream gets a ping after this long without an event"
    )
    sink_queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Slots in each best-effort sink's queue (access log, metrics, PostHog); a full one drops, counted. "
        "Usage records never wait here",
    )


class UIConfig(_Strict):
    """The admin console (lockgate/console/, docs/console.md)."""

    enabled: bool = Field(default=True, description="Serve the admin console")
    path: str = Field(default="/ui", pattern=r"^/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]$", description="Where it is served")
    session_idle_s: float = Field(default=1800.0, gt=0, description="A session unused this long ends")
    session_max_s: float = Field(default=8 * 3600.0, gt=0, description="A session ends this long after login")
    # Failed logins per minute before 429: per user name, and per client address.
    login_failures_per_user: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(
        default=20, ge=1, description="Failed logins per client address per minute before 429"
    )


class Config(_Strict):
    server: ServerConfig = Field(default=ServerConfig(), description="Listening and request handling")
    auth: AuthConfig = Field(default=AuthConfig(), description="Credentials: master key, virtual keys, JWTs")
    models: list[ModelGroup] = Field(min_length=1, description="The public model names and the deployments behind each")
    router: RouterConfig = Field(default=RouterConfig(), description="Retries, backoff and cool-downs (docs/routing.md)")
    database: DatabaseConfig = Field(default=DatabaseConfig(), description="Keys, teams, usage and stored responses")
    usage: UsageConfig = Field(default=UsageConfig(), description="The usage writer (docs/usage.md)")
    responses: ResponsesConfig = Field(default=ResponsesConfig(), description="Stored Responses (docs/responses.md)")
    ratelimit: RateLimitConfig = Field(default=RateLimitConfig(), description="Rate limits (docs/ratelimits.md)")
    budgets: BudgetsConfig = Field(default=BudgetsConfig(), description="Spend budgets (docs/usage.md)")
    redis: RedisConfig = Field(default=RedisConfig(), description="The Redis shared by every feature whose backend is redis")
    posthog: PostHogConfig | None = Field(default=None, description="PostHog LLM analytics; off when absent (docs/operations.md)")
    telemetry: TelemetryConfig = Field(default=TelemetryConfig(), description="Logs, metrics and traces (docs/operations.md)")
    ui: UIConfig = Field(default=UIConfig(), description="The admin console (docs/console.md)")

    @model_validator(mode="after")
    def _names_are_unique_and_fallbacks_exist(self) -> "Config":
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        known = set(names)
        for i, group in enumerate(self.models):
            for fb in group.fallbacks:
                if fb not in known:
                    raise ValueError(f"models[{i}].fallbacks names unknown model {fb!r}")
        return self

    def redis_users(self) -> list[str]:
        """The features whose backend is redis (they share the one client of ``redis:``)."""
        backends = {
            "ratelimit": self.ratelimit.backend,
            "budgets": self.budgets.backend,
            "cooldowns": self.router.cooldown.backend,
        }
        return [name for name, backend in backends.items() if backend == "redis"]

    def model(self, name: str) -> ModelGroup | None:
        for group in self.models:
            if group.name == name:
                return group
        return None


# --- loading ---------------------------------------------------------------------------


def interpolate(value: Any, env: dict[str, str], path: str = "") -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of a parsed YAML tree."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            if name in env:
                return ""
            raise ConfigError(f"{path or 'config'}: environment variable {name} is not set")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if part in PROVIDERS and i >= 2 and loc[i - 2] == "deployments":
            continue  # the union's tag (models.0.deployments.0.openai.x): the place is the deployment's own
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# Settings that left their old place: the error says where they went (docs/ratelimits.md#redis).
MOVED_FIELDS = {
    "ratelimit.redis_url": "redis.url",
    "ratelimit.redis_timeout_s": "redis.timeout_s (and redis.connect_timeout_s)",
    "ratelimit.key_prefix": "redis.key_prefix (limiter keys now start with {redis.key_prefix}rl:)",
    "ratelimit.on_backend_error": "redis.on_error (it applies to every feature that uses Redis)",
}
_BACKENDS_NOTE = (
    "note: ratelimit.backend now moves only the limiter to Redis; budgets.backend and "
    "router.cooldown.backend say where budgets and cool-downs live (default memory); see docs/ratelimits.md"
)


_PROVIDER_CHOICES = "Input should be " + ", ".join(repr(p) for p in PROVIDERS[:-1]) + f" or {PROVIDERS[-1]!r}"


def format_validation_error(err: ValidationError) -> str:
    lines = []
    moved = False
    for e in err.errors(include_url=False):
        where = _loc(tuple(e["loc"])) or "config"
        msg = e["msg"]
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):  # the deployment union's tag
            where = f"{where}.provider"
            msg = "Field required" if e["type"] == "union_tag_not_found" else _PROVIDER_CHOICES
        elif e["type"] == "extra_forbidden":
            msg = "unknown field"
            if where in MOVED_FIELDS:
                msg, moved = f"moved to {MOVED_FIELDS[where]}", True
        lines.append(f"{where}: {msg}")
    if moved:
        lines.append(_BACKENDS_NOTE)
    return "\n".join(lines)


def parse_config(data: Any, env: dict[str, str] | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError("config: the top level must be a mapping")
    data = interpolate(data, dict(os.environ) if env is None else env)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise ConfigError(f"{p}: cannot read: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from None
    return parse_config(data, env)


# Well-known OpenAI models served by the embedded default when OPENAI_API_KEY is set.
DEFAULT_OPENAI_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o4-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
)
DEFAULT_ANTHROPIC_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")


def default_config(env: dict[str, str] | None = None) -> Config:
    """The embedded default: real providers whose keys are set, else a mock model."""
    env = dict(os.environ) if env is None else env
    models: list[dict[str, Any]] = []
    if env.get("OPENAI_API_KEY"):
        base = env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        for name in DEFAULT_OPENAI_MODELS:
            models.append(
                {
                    "name": name,
                    "deployments": [{"provider": "openai", "model": name, "api_base": base, "api_key": env["OPENAI_API_KEY"]}],
                }
            )
    if env.get("ANTHROPIC_API_KEY"):
        base = env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
        for name in DEFAULT_ANTHROPIC_MODELS:
            models.append(
                {
                    "name": name,
                    "deployments": [
                        {"provider": "anthropic", "model": name, "api_base": base, "api_key": env["ANTHROPIC_API_KEY"]}
                    ],
                }
            )
    if not models:
        models = [
            {
                "name": "mock-gpt",
                "owned_by": "lockgate-mock",
                "deployments": [{"provider": "mock", "model": "mock-gpt", "mock_tokens_per_s": 0}],
            },
            {
                "name": "mock-embedding",
                "owned_by": "lockgate-mock",
                "deployments": [{"provider": "mock", "model": "mock-embedding"}],
            },
        ]
    master = env.get("LOCKGATE_MASTER_KEY") or DEV_MASTER_KEY
    return Config.model_validate(
        {
            "auth": {"master_key": master},
            "models": models,
            "database": {"url": env.get("LOCKGATE_DATABASE_URL", "sqlite:///lockgate.db")},
        }
    )


def resolve_config(path: str | None, env: dict[str, str] | None = None) -> Config:
    """The config from a file (argument, else LOCKGATE_CONFIG), else the embedded default."""
    env = dict(os.environ) if env is None else env
    path = path or env.get("LOCKGATE_CONFIG") or None
    if path:
        return load_config(path, env)
    return default_config(env)
