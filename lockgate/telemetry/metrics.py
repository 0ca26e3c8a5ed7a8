"""Prometheus metrics, fed from records in the sink task (never on the request path).

Only the in-flight gauge is touched around each request (one mmap write).
With several workers, `lockgate serve --workers N` sets PROMETHEUS_MULTIPROC_DIR
before any worker imports prometheus_client, so each worker writes its own
files and a scrape of any worker sums them all (see ``render``).

Labels are bounded by configuration (public model, deployment) or by the closed
error vocabulary, never by users or keys: cardinality stays fixed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest, multiprocess

from lockgate.background import Ticker
from lockgate.records import RequestRecord

log = structlog.get_logger("lockgate.metrics")

disable_created_metrics()  # the *_created series only add noise to every counter

MULTIPROC = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Latency of LLM calls spans milliseconds (cache, mock) to minutes (long generations).
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)

REQUESTS = Counter(
    "lockgate_requests",
    "Requests answered, by public model, deployment, status and error type",
    ["model", "deployment", "status", "error_type"],
)
LATENCY = Histogram(
    "lockgate_request_duration_seconds",
    "Whole-request latency (to the last byte of a stream)",
    ["model", "deployment"],
    buckets=_LATENCY_BUCKETS,
)
TTFT = Histogram(
    "lockgate_time_to_first_token_seconds",
    "Time to the first streamed token",
    ["model", "deployment"],
    buckets=_TTFT_BUCKETS,
)
TOKENS = Counter(
    "lockgate_tokens",
    "Tokens, by kind: prompt, completion, cached (read), cache_creation, reasoning",
    ["model", "deployment", "kind"],
)
COST = Counter("lockgate_cost_usd", "Spend in USD (priced requests only)", ["model", "deployment"])
UNPRICED = Counter("lockgate_unpriced_requests", "Requests with tokens but no known price", ["model", "deployment"])
UPSTREAM_ERRORS = Counter(
    "lockgate_upstream_errors",
    "Failed upstream attempts (retried or not), by deployment and error type",
    ["model", "deployment", "error_type"],
)
RETRIES = Counter("lockgate_retries", "Attempts beyond the first", ["model"])
FAILOVERS = Counter(
    "lockgate_failovers", "Requests that moved on from a failed attempt at this deployment", ["model", "deployment"]
)
RATE_LIMITED = Counter("lockgate_rate_limited", "Requests refused by a rate limit", ["model"])
BUDGET_REFUSED = Counter("lockgate_budget_refused", "Requests refused by an exhausted budget", ["model"])
AUTH_FAILED = Counter("lockgate_auth_failures", "Requests refused for a missing or wrong credential")
HTTP_REFUSED = Counter(
    "lockgate_http_refused",
    "Requests refused before any route: CORS preflights, oversized headers, slow clients, malformed HTTP",
    ["reason"],
)


def count_refusal(reason: str) -> None:
    HTTP_REFUSED.labels(reason=reason).inc()


IN_FLIGHT = Gauge("lockgate_requests_in_flight", "Requests being served", multiprocess_mode="livesum")
DEPLOYMENT_UP = Gauge(
    "lockgate_deployment_up",
    "1 when the deployment takes traffic, 0 while cooling down (min over workers)",
    ["model", "deployment"],
    multiprocess_mode="livemin",
)
DEPLOYMENT_COOLDOWN = Gauge(
    "lockgate_deployment_cooldown_remaining_seconds",
    "Seconds left in the deployment's cool-down (max over workers)",
    ["model", "deployment"],
    multiprocess_mode="livemax",
)
# Best-effort sinks only (access_log, metrics, posthog): usage records never wait in these queues.
SINK_DEPTH = Gauge(
    "lockgate_sink_queue_depth", "Records waiting in a best-effort sink's queue", ["sink"], multiprocess_mode="livesum"
)
SINK_DROPPED = Counter(
    "lockgate_sink_dropped",
    "Records a best-effort sink lost: its queue was full (for posthog also events its client's queue refused)",
    ["sink"],
)
POSTHOG_DEPTH = Gauge("lockgate_posthog_queue_depth", "Events waiting in the PostHog client", multiprocess_mode="livesum")
# Counts kept by components (usage writer, limiter, budgets), copied here by the sampler.
USAGE_BUFFERED = Gauge(
    "lockgate_usage_buffered_records", "Usage records waiting for the next database write", multiprocess_mode="livesum"
)
USAGE_WRITTEN = Counter("lockgate_usage_written_records", "Usage records written to the database (spool replays included)")
USAGE_SPOOLED = Counter(
    "lockgate_usage_spooled_records", "Usage records appended to the durable spool because the database failed or was slow"
)
USAGE_SPOOL_PENDING = Gauge(
    "lockgate_usage_spool_pending",
    "1 while a worker's spool holds records not yet replayed (workers with a pending spool)",
    multiprocess_mode="livesum",
)
USAGE_WRITE_FAILURES = Counter("lockgate_usage_write_failures", "Usage database writes that failed or timed out")
USAGE_SPOOL_FAILURES = Counter(
    "lockgate_usage_spool_failures", "Spool appends that failed (disk full or gone): the records stay in memory"
)
# usage.http_sink (usage/http_sink.py): the same records POSTed to a receiver.
USAGE_HTTP_SENT = Counter("lockgate_usage_http_sent_records", "Usage records a usage.http_sink receiver took (replays included)")
USAGE_HTTP_FAILURES = Counter(
    "lockgate_usage_http_failures", "usage.http_sink POSTs that failed or timed out (their batch spooled)"
)
USAGE_HTTP_SPOOL_PENDING = Gauge(
    "lockgate_usage_http_spool_pending",
    "1 while a worker's usage.http_sink spool holds records not yet sent",
    multiprocess_mode="livesum",
)
RATELIMIT_BACKEND_ERRORS = Counter("lockgate_ratelimit_backend_errors", "Rate-limiter back-end (Redis) round trips that failed")
RATELIMIT_FAIL_OPEN = Counter(
    "lockgate_ratelimit_fail_open", "Requests admitted unmetered because the limiter's back-end failed (redis.on_error: allow)"
)
RATELIMIT_DROPPED = Counter(
    "lockgate_ratelimit_dropped_corrections", "Token corrections dropped (buffer full or back-end failed)"
)
BUDGET_DROPPED = Counter("lockgate_budget_dropped_increments", "Spend increments the shared budget counters (Redis) lost")

# Sampled name -> counter; each is the component's running total, so the sampler adds the difference.
_SAMPLED_COUNTERS = {
    "usage_written": USAGE_WRITTEN,
    "usage_spooled": USAGE_SPOOLED,
    "usage_write_failures": USAGE_WRITE_FAILURES,
    "usage_spool_failures": USAGE_SPOOL_FAILURES,
    "usage_http_sent": USAGE_HTTP_SENT,
    "usage_http_failures": USAGE_HTTP_FAILURES,
    "ratelimit_errors": RATELIMIT_BACKEND_ERRORS,
    "ratelimit_fail_open": RATELIMIT_FAIL_OPEN,
    "ratelimit_dropped": RATELIMIT_DROPPED,
    "budget_dropped": BUDGET_DROPPED,
}
_SAMPLED_GAUGES = {
    "usage_buffered": USAGE_BUFFERED,
    "usage_spool_pending": USAGE_SPOOL_PENDING,
    "usage_http_spool_pending": USAGE_HTTP_SPOOL_PENDING,
}


def _label(value: str | None) -> str:
    return value if value is not None else "none"


class MetricsSink:
    """Turns each record into counter and histogram updates."""

    name = "metrics"

    async def handle(self, record: RequestRecord) -> None:
        observe(record)

    async def aclose(self) -> None:
        return None


_TOKEN_KINDS = ("prompt", "completion", "cached", "cache_creation", "reasoning")


class _Series:
    """The labelled children of one (model, deployment), looked up once: `.labels()` costs a lock
    and a dict lookup per call, and a request touches up to nine series. Bounded by configuration."""

    __slots__ = ("latency", "ttft", "tokens", "cost", "unpriced", "requests_ok")

    def __init__(self, model: str, deployment: str) -> None:
        self.latency = LATENCY.labels(model, deployment)
        self.ttft = TTFT.labels(model, deployment)
        self.tokens = tuple(TOKENS.labels(model, deployment, kind) for kind in _TOKEN_KINDS)
        self.cost = COST.labels(model, deployment)
        self.unpriced = UNPRICED.labels(model, deployment)
        self.requests_ok = REQUESTS.labels(model, deployment, "200", "none")


_SERIES: dict[tuple[str, str], _Series] = {}


def _series(model: str, deployment: str) -> _Series:
    series = _SERIES.get((model, deployment))
    if series is None:
        series = _SERIES[(model, deployment)] = _Series(model, deployment)
    return series


def observe(record: RequestRecord) -> None:
    model, deployment = _label(record.public_model), _label(record.deployment)
    err = record.error_type
    if record.attempt is not None:
        # A failed attempt that was followed by another: an upstream error and a failover.
        UPSTREAM_ERRORS.labels(model, deployment, _label(err)).inc()
        FAILOVERS.labels(model, deployment).inc()
        return
    if record.status == 200 and err is None and record.deployment is not None:
        _series(model, deployment).requests_ok.inc()  # the common case, without a label lookup
    else:
        REQUESTS.labels(model, deployment, str(record.status), _label(err)).inc()
    if err is not None and err.startswith("provider_"):
        UPSTREAM_ERRORS.labels(model, deployment, err).inc()
    elif err == "policy_rate_limited":
        RATE_LIMITED.labels(model).inc()
    elif err == "policy_budget_exceeded":
        BUDGET_REFUSED.labels(model).inc()
    elif err == "caller_authentication":
        AUTH_FAILED.inc()
    if record.attempts > 1:
        RETRIES.labels(model).inc(record.attempts - 1)
    if record.deployment is None:
        return  # refused before any upstream: no latency or tokens worth a series
    series = _series(model, deployment)
    series.latency.observe(record.latency_ms / 1000)
    if record.ttft_ms is not None:
        series.ttft.observe(record.ttft_ms / 1000)
    counts = (
        record.prompt_tokens,
        record.completion_tokens,
        record.cached_tokens,
        record.cache_creation_tokens,
        record.reasoning_tokens,
    )
    for child, n in zip(series.tokens, counts, strict=True):
        if n:
            child.inc(n)
    if record.prompt_tokens or record.completion_tokens:
        if record.cost_usd is None:  # priced once by the pipeline (usage.pricing)
            series.unpriced.inc()
        elif record.cost_usd:
            series.cost.inc(record.cost_usd)


class StateSampler:
    """Copies state that lives in objects (router health, queue depths) into gauges, once a second.

    Each worker samples its own state, so a scrape answered by any worker sees all of them.
    """

    def __init__(
        self,
        describe: Callable[[], list[dict[str, Any]]],
        sinks: Any,
        posthog: Any = None,
        interval_s: float = 1.0,
        components: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.describe, self.sinks, self.posthog, self.interval_s = describe, sinks, posthog, interval_s
        self.components = components
        self._dropped_seen: dict[str, int] = {}
        self._seen: dict[str, float] = {}
        for name in self.sinks.depth_by_sink():  # every sink's series exists from the start, at 0
            SINK_DROPPED.labels(name)
            SINK_DEPTH.labels(name).set(0)
        self._ticker = Ticker(self.sample, interval_s, "lockgate-metrics-sampler", error_event="metrics_sample_failed")

    def start(self) -> None:
        self.sample()
        self._ticker.start()

    def sample(self) -> None:
        for model in self.describe():
            for dep in model.get("deployments", ()):  # type: ignore[union-attr]
                up = 1 if dep.get("state", "healthy") != "cooling" else 0
                DEPLOYMENT_UP.labels(model["model"], dep["id"]).set(up)
                DEPLOYMENT_COOLDOWN.labels(model["model"], dep["id"]).set(float(dep.get("cooldown_remaining_s", 0.0)))
        for name, depth in self.sinks.depth_by_sink().items():
            SINK_DEPTH.labels(name).set(depth)
        dropped = self.sinks.dropped_by_sink()
        if self.posthog is not None:
            POSTHOG_DEPTH.set(self.posthog.queue_depth)
            # Events the client's own queue refused are lost to PostHog just the same.
            dropped[self.posthog.name] = dropped.get(self.posthog.name, 0) + self.posthog.failed
        for name, total in dropped.items():
            seen = self._dropped_seen.get(name, 0)
            if total > seen:
                SINK_DROPPED.labels(name).inc(total - seen)
                self._dropped_seen[name] = total
        if self.components is not None:
            for name, current in self.components().items():
                gauge = _SAMPLED_GAUGES.get(name)
                if gauge is not None:
                    gauge.set(current)
                elif current > self._seen.get(name, 0):
                    _SAMPLED_COUNTERS[name].inc(current - self._seen.get(name, 0))
                    self._seen[name] = current

    async def aclose(self) -> None:
        await self._ticker.stop()
        if MULTIPROC:
            # This worker's live gauges leave the sums.
            multiprocess.mark_process_dead(os.getpid())


def gateway_components(gateway: Any) -> Callable[[], dict[str, float]]:
    """What the sampler reads from the gateway's components: running totals and levels."""
    usage_sink = getattr(getattr(gateway, "usage", None), "sink", None)
    http_sink = getattr(getattr(gateway, "usage", None), "http_sink", None)
    admission = getattr(gateway, "ratelimit", None)
    fail_open = gateway.config.redis.on_error == "allow"
    limiter = getattr(admission, "limiter", None)
    counters = getattr(getattr(getattr(gateway, "usage", None), "budgets", None), "counters", None)

    def read() -> dict[str, float]:
        out: dict[str, float] = {}
        try:
            stats = usage_sink.stats() if usage_sink is not None else None
        except (ValueError, OSError):  # closed at shutdown (its spool file with it)
            stats = None
        if stats is not None:
            out["usage_buffered"] = stats["buffered"]
            out["usage_written"] = stats["written"]
            out["usage_spooled"] = stats["spooled"]
            out["usage_write_failures"] = stats["write_failures"]
            out["usage_spool_failures"] = stats["spool_failures"]
            out["usage_spool_pending"] = 1 if stats["spool_pending"] else 0
        try:
            http = http_sink.stats() if http_sink is not None else None
        except (ValueError, OSError):
            http = None
        if http is not None:
            out["usage_http_sent"] = http["written"]
            out["usage_http_failures"] = http["write_failures"]
            out["usage_http_spool_pending"] = 1 if http["spool_pending"] else 0
        if admission is not None:
            # Failed checks: admitted unmetered when the policy is allow (a deny is a 503, in requests_total).
            out["ratelimit_fail_open"] = admission.backend_errors if fail_open else 0
            out["ratelimit_errors"] = getattr(limiter, "errors", 0)
            out["ratelimit_dropped"] = getattr(limiter, "dropped", 0)
        out["budget_dropped"] = getattr(counters, "dropped", 0)
        return out

    return read


def render() -> bytes:
    """The exposition text: every worker's values in multiprocess mode, this process's otherwise."""
    if MULTIPROC:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
