"""PostHog LLM analytics: one `$ai_generation` per upstream attempt, plus gateway events.

Events are built from records in the sink task and handed to the official
client, whose own consumer thread batches them to `/batch/`. ``capture`` only
enqueues (a full queue drops), so a PostHog outage costs requests nothing;
shutdown flushes with a bound so it cannot hang the gateway either.

The event shape follows PostHog's documented `$ai_generation` properties, so
its LLM dashboards work unchanged. Token counts are OpenAI-shaped for every
provider (input includes cache reads and writes): `$ai_cache_reporting_exclusive`
is False.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import structlog

from lockgate import redaction
from lockgate.config import PostHogConfig
from lockgate.records import RequestRecord
from lockgate.telemetry.logging import redact

log = structlog.get_logger("lockgate.posthog")

GENERATION = "$ai_generation"
RATE_LIMITED = "lockgate rate limited"
BUDGET_EXCEEDED = "lockgate budget exceeded"
AUTH_FAILED = "lockgate auth failed"
FAILOVER = "lockgate failover"

_POLICY_EVENTS = {
    "policy_rate_limited": RATE_LIMITED,
    "policy_parallel_limited": RATE_LIMITED,
    "policy_budget_exceeded": BUDGET_EXCEEDED,
    "caller_authentication": AUTH_FAILED,
}

Event = tuple[str, str, dict[str, Any], dict[str, str] | None]  # name, distinct_id, properties, groups


def _who(record: RequestRecord) -> tuple[str, dict[str, Any], dict[str, str] | None]:
    """distinct_id is the key's user, else the key id; anonymous events make no person profile."""
    props: dict[str, Any] = {}
    distinct = record.user or record.key_id
    if distinct is None:
        distinct = record.parent_request_id or record.request_id
        props["$process_person_profile"] = False
    groups = {"team": record.team} if record.team else None
    return distinct, props, groups


def _common(record: RequestRecord) -> dict[str, Any]:
    return {
        "lockgate_key_id": record.key_id,
        "lockgate_team": record.team,
        "lockgate_model": record.public_model,
        "lockgate_endpoint": record.endpoint,
    }


def generation_event(record: RequestRecord, privacy_mode: bool = True) -> Event:
    trace_id = record.parent_request_id or record.request_id
    number = record.attempt if record.attempt is not None else max(record.attempts, 1)
    distinct, props, groups = _who(record)
    is_error = record.status >= 400 or record.error_type is not None
    props.update(
        {
            "$ai_trace_id": trace_id,
            "$ai_span_id": f"{trace_id}.{number}",
            "$ai_span_name": record.endpoint,
            "$ai_parent_id": trace_id,
            "$ai_model": record.upstream_model,
            "$ai_provider": record.provider,
            "$ai_input_tokens": record.prompt_tokens,
            "$ai_output_tokens": record.completion_tokens,
            "$ai_total_tokens": record.prompt_tokens + record.completion_tokens,
            "$ai_cache_read_input_tokens": record.cached_tokens,
            "$ai_cache_creation_input_tokens": record.cache_creation_tokens,
            "$ai_cache_reporting_exclusive": False,
            "$ai_reasoning_tokens": record.reasoning_tokens,
            "$ai_latency": round(record.latency_ms / 1000, 6),
            "$ai_http_status": record.status,
            "$ai_is_error": is_error,
            "$ai_stream": record.streamed,
            "$ai_base_url": record.api_base,
            **_common(record),
            "lockgate_deployment": record.deployment,
            "lockgate_attempt": number,
            "lockgate_usage_estimated": record.usage_estimated,
            "lockgate_partial": record.partial,
        }
    )
    session = record.extra.get("session_id")
    if isinstance(session, str) and session:
        props["$ai_session_id"] = session
    if record.ttft_ms is not None:
        props["$ai_time_to_first_token"] = round(record.ttft_ms / 1000, 6)
    if is_error:
        props["$ai_error"] = record.error_message or record.error_type or f"HTTP {record.status}"
        props["$ai_error_type"] = record.error_type
    if record.cost_usd is not None:  # priced once by the pipeline (usage.pricing); unknown: no cost at all
        if record.input_cost_usd is not None and record.output_cost_usd is not None:
            props["$ai_input_cost_usd"] = record.input_cost_usd
            props["$ai_output_cost_usd"] = record.output_cost_usd
        props["$ai_total_cost_usd"] = record.cost_usd
    content = getattr(record, "content", None)
    if not privacy_mode and content:
        if content.get("input") is not None:
            props["$ai_input"] = content["input"]
        if content.get("output_choices") is not None:
            props["$ai_output_choices"] = content["output_choices"]
    return GENERATION, distinct, props, groups


def gateway_event(record: RequestRecord) -> Event | None:
    """The gateway's own events: refusals, failed authentication, failover. None for the rest."""
    name = _POLICY_EVENTS.get(record.error_type or "")
    if name is None:
        if record.attempt is None and record.attempts > 1:
            name = FAILOVER
        else:
            return None
    distinct, props, groups = _who(record)
    props.update({"lockgate_request_id": record.request_id, "$ai_trace_id": record.request_id, **_common(record)})
    props["lockgate_status"] = record.status
    if name == FAILOVER:
        props.update(
            {
                "lockgate_attempts": record.attempts,
                "lockgate_deployment": record.deployment,
                "lockgate_succeeded": record.status < 400,
            }
        )
    else:
        # The credential itself is never in a record; the reason is redacted all the same (events_for).
        props["lockgate_reason"] = record.error_message or ""
    return name, distinct, props, groups


# Captured content (outside privacy mode) is the caller's own text, passed on as it is.
_CONTENT = frozenset({"$ai_input", "$ai_output_choices"})


def _redacted(event: Event) -> Event:
    """Every string property redacted (error text, base URL, names): configured secrets never leave."""
    name, distinct, props, groups = event
    redactor = redaction.active()
    for key, value in props.items():
        if isinstance(value, str) and key not in _CONTENT:
            props[key] = redactor.cached(value)
    return name, redactor.cached(distinct), props, groups


def events_for(record: RequestRecord, privacy_mode: bool = True) -> list[Event]:
    events: list[Event] = []
    if record.deployment is not None:  # an upstream was tried
        events.append(_redacted(generation_event(record, privacy_mode)))
    extra = gateway_event(record)
    if extra is not None:
        events.append(_redacted(extra))
    return events


class PostHogSink:
    """Hands events to the posthog client (its own thread batches and sends them)."""

    name = "posthog"

    def __init__(self, config: PostHogConfig, client: Any | None = None) -> None:
        self.privacy_mode = config.privacy_mode
        self.shutdown_timeout_s = config.shutdown_timeout_s
        self.client = client if client is not None else _build_client(config)
        self.captured = 0
        self.failed = 0

    @property
    def queue_depth(self) -> int:
        try:
            return int(self.client.queue.qsize())
        except Exception:
            return 0

    @property
    def queue_limit(self) -> int:
        return int(getattr(self.client.queue, "maxsize", 0) or 0)

    async def handle(self, record: RequestRecord) -> None:
        for name, distinct, props, groups in events_for(record, self.privacy_mode):
            # capture() enqueues without blocking; None means the client dropped the event.
            if self.client.capture(name, distinct_id=distinct, properties=props, groups=groups) is None:
                self.failed += 1
            else:
                self.captured += 1

    async def aclose(self) -> None:
        """Flush and stop the client, but never wait longer than the bound (PostHog may be down)."""
        done = threading.Thread(target=self._shutdown, name="lockgate-posthog-shutdown", daemon=True)
        done.start()
        await asyncio.to_thread(done.join, self.shutdown_timeout_s)
        if done.is_alive():
            log.warning("posthog_flush_timeout", left=self.queue_depth, timeout_s=self.shutdown_timeout_s)

    def _shutdown(self) -> None:
        try:
            self.client.shutdown()
        except Exception:
            log.exception("posthog_shutdown_failed")


def _build_client(config: PostHogConfig) -> Any:
    from posthog import Posthog

    assert config.api_key is not None
    return Posthog(
        config.api_key.get_secret_value(),
        host=config.host,
        flush_at=config.flush_at,
        flush_interval=config.flush_interval_s,
        max_queue_size=config.max_queue_size,
        gzip=config.gzip,
        max_retries=config.max_retries,
        timeout=config.timeout_s,
        disable_geoip=True,
        enable_local_evaluation=False,
        on_error=_on_error,
    )


def _on_error(error: Exception, batch: Any) -> None:
    # Runs on the client's thread: log and move on (the batch is lost; PostHog is best-effort).
    log.warning("posthog_send_failed", error=redact(str(error)), events=len(batch) if batch else 0)
