"""OpenTelemetry spans for the pipeline's stages and each upstream attempt (GenAI conventions).

Off unless ``telemetry.otlp_endpoint`` is set, and then free: tracing is the
pipeline's stage hooks (``TracingHooks``, given to the Pipeline at start-up), so
a gateway without an endpoint builds its pipeline without hooks and makes no
tracer call at all.

Spans: ``{operation} {model}`` (the request, SERVER) with children
``authenticate``, ``parse``, ``resolve``, ``admit``, ``route`` (its children are
one ``{operation} {upstream model}`` CLIENT span per attempt) and ``relay`` for
streams.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from lockgate.context import RequestContext
from lockgate.errors import GatewayError
from lockgate.pipeline import Outcome, Pipeline, StreamOutcome
from lockgate.router import Attempt, ModelRoute, Upstream

_OPERATION = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
T = TypeVar("T")


def otlp_traces_url(endpoint: str) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT is a base URL; the HTTP exporter wants the traces path."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class Tracing:
    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("lockgate")

    @classmethod
    def from_endpoint(cls, endpoint: str | None, service_version: str = "") -> "Tracing | None":
        if not endpoint:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "lockgate", "service.version": service_version}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_traces_url(endpoint), timeout=5)))
        return cls(provider)

    def hooks(self) -> "TracingHooks":
        """The pipeline's stage hooks that make these spans (passed to ``Pipeline(hooks=…)``)."""
        return TracingHooks(self.tracer)

    def instrument(self, pipeline: Pipeline) -> None:
        """Trace an already built pipeline (tests attach an in-memory exporter to a running gateway)."""
        pipeline.observe(self.hooks())

    async def shutdown(self, timeout_s: float = 5.0) -> None:
        """Export what is buffered; bounded, since the collector may be down."""
        worker = threading.Thread(target=self.provider.shutdown, name="lockgate-otel-shutdown", daemon=True)
        worker.start()
        await asyncio.to_thread(worker.join, timeout_s)


class TracingHooks:
    """PipelineHooks that put each stage, the route and every attempt in a span."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    async def request(self, ctx: RequestContext, handle: Awaitable[Outcome]) -> Outcome:
        operation = _OPERATION.get(ctx.endpoint, ctx.endpoint)
        span = self.tracer.start_span(
            operation,
            kind=SpanKind.SERVER,
            attributes={"gen_ai.operation.name": operation, "lockgate.request_id": ctx.request_id},
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            outcome = await handle
        except BaseException:
            span.end()
            raise
        finally:
            otel_context.detach(token)
        if isinstance(outcome, StreamOutcome):
            outcome.chunks = _relay(self.tracer, span, ctx, outcome.chunks)
        else:
            _end_request(span, ctx, outcome.status)
        return outcome

    @contextmanager
    def stage(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
        with self.tracer.start_as_current_span(name, attributes=attributes) as span:
            try:
                yield span
            except GatewayError as err:
                span.set_attribute("error.type", err.kind)
                span.set_status(Status(StatusCode.ERROR, err.kind))
                raise

    @contextmanager
    def route(self, route: ModelRoute, attempts: list[Attempt]) -> Iterator[Any]:
        with self.tracer.start_as_current_span("route", attributes={"lockgate.model": route.name}) as span:
            try:
                yield span
            finally:
                span.set_attribute("lockgate.attempts", len(attempts))

    def attempt(
        self, ctx: RequestContext, attempts: list[Attempt], op: Callable[[Upstream], Awaitable[T]]
    ) -> Callable[[Upstream], Awaitable[T]]:
        tracer = self.tracer
        operation = _OPERATION.get(ctx.endpoint, ctx.endpoint)

        async def traced_op(upstream: Upstream) -> T:
            dep = upstream.config
            attributes: dict[str, Any] = {
                "gen_ai.system": dep.provider,
                "gen_ai.provider.name": dep.provider,
                "gen_ai.request.model": dep.model,
                "lockgate.deployment": upstream.id,
                "lockgate.attempt": len(attempts),
            }
            base = dep.api_base and urlsplit(dep.api_base)
            if base and base.hostname:
                attributes["server.address"] = base.hostname
                if base.port:
                    attributes["server.port"] = base.port
            with tracer.start_as_current_span(
                f"{operation} {dep.model}", kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
            ) as span:
                try:
                    result = await op(upstream)
                except GatewayError as err:
                    span.set_attribute("error.type", err.kind)
                    span.set_status(Status(StatusCode.ERROR, err.kind))
                    raise
                _describe_result(span, result)
                return result

        return traced_op


def _describe_result(span: Any, result: Any) -> None:
    """Usage and response model of a non-streamed upstream answer (streams report at the end)."""
    usage, body = getattr(result, "usage", None), getattr(result, "body", None)
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
    if isinstance(body, dict):
        if isinstance(body.get("model"), str):
            span.set_attribute("gen_ai.response.model", body["model"])
        if isinstance(body.get("id"), str):
            span.set_attribute("gen_ai.response.id", body["id"])
        reasons = [c.get("finish_reason") for c in body.get("choices") or () if isinstance(c, dict) and c.get("finish_reason")]
        if reasons:
            span.set_attribute("gen_ai.response.finish_reasons", reasons)


async def _relay(tracer: Any, root: Any, ctx: RequestContext, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    relay = tracer.start_span("relay", context=trace.set_span_in_context(root))
    status = 499  # unless the stream runs to its end
    try:
        async for chunk in chunks:
            yield chunk
        status = 200
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        relay.end()
        _end_request(root, ctx, status)


def _end_request(span: Any, ctx: RequestContext, status: int) -> None:
    body = ctx.body or {}
    operation = _OPERATION.get(ctx.endpoint, ctx.endpoint)
    model = ctx.route.name if ctx.route else body.get("model")
    if isinstance(model, str):
        span.update_name(f"{operation} {model}")
        span.set_attribute("gen_ai.request.model", model)
    for key, attr in (
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
    ):
        value = body.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            span.set_attribute(attr, value)
    upstream = ctx.upstream
    if upstream is not None:
        span.set_attribute("gen_ai.system", upstream.config.provider)
        span.set_attribute("gen_ai.provider.name", upstream.config.provider)
        span.set_attribute("gen_ai.response.model", upstream.config.model)
        span.set_attribute("lockgate.deployment", upstream.id)
    if ctx.usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", ctx.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", ctx.usage.completion_tokens)
    if ctx.principal is not None:
        span.set_attribute("lockgate.key_id", ctx.principal.key_id)
    span.set_attribute("lockgate.attempts", len(ctx.attempts))
    span.set_attribute("lockgate.stream", ctx.stream)
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))
    span.end()
