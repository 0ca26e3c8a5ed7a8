"""OpenTelemetry spans for the pipeline's stages and each upstream attempt (GenAI conventions).

Off unless ``telemetry.otlp_endpoint`` is set, and then free: tracing is added
at start-up by wrapping the pipeline's collaborators (authenticator,
admissions, router) and its ``handle``, so a gateway without an endpoint runs
the plain pipeline with no tracer call at all.

Spans: ``{operation} {model}`` (the request, SERVER) with children
``authenticate``, ``parse``, ``resolve``, ``admit``, ``route`` (its children are
one ``{operation} {upstream model}`` CLIENT span per attempt) and ``relay`` for
streams.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from lockgate.context import RequestContext
from lockgate.errors import GatewayError
from lockgate.pipeline import JsonOutcome, Pipeline, StreamOutcome

_OPERATION = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
# Per request (contextvars follow the request's task): when authentication ended, which operation.
_AUTH_END: ContextVar[int | None] = ContextVar("lockgate_auth_end", default=None)
_OPERATION_NAME: ContextVar[str] = ContextVar("lockgate_operation", default="chat")


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

    def instrument(self, pipeline: Pipeline) -> None:
        """Wrap the pipeline's parts in spans (once, at start-up)."""
        tracer = self.tracer
        pipeline.authenticator = _Traced(pipeline.authenticator, "authenticate", tracer)  # type: ignore[assignment]
        pipeline.admissions = [_Traced(a, "admit", tracer, name=f"admit {type(a).__name__}") for a in pipeline.admissions]
        pipeline.router = _TracedRouter(pipeline.router, tracer)  # type: ignore[assignment]
        inner_resolve, inner_handle = pipeline.resolve, pipeline.handle

        def resolve(model: str, principal: Any) -> Any:
            # Parsing runs between authentication and resolution: its span is that gap.
            auth_end = _AUTH_END.get()
            if auth_end is not None:
                tracer.start_span("parse", start_time=auth_end).end()
            with tracer.start_as_current_span("resolve", attributes={"gen_ai.request.model": model}):
                return inner_resolve(model, principal)

        async def handle(ctx: RequestContext, raw: bytes, headers: Any) -> Any:
            operation = _OPERATION.get(ctx.endpoint, ctx.endpoint)
            _AUTH_END.set(None)
            _OPERATION_NAME.set(operation)
            span = tracer.start_span(
                operation,
                kind=SpanKind.SERVER,
                attributes={
                    "gen_ai.operation.name": operation,
                    "lockgate.request_id": ctx.request_id,
                },
            )
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                outcome = await inner_handle(ctx, raw, headers)
            except BaseException:
                span.end()
                raise
            finally:
                otel_context.detach(token)
            if isinstance(outcome, StreamOutcome):
                outcome.chunks = _relay(tracer, span, ctx, outcome.chunks)
            else:
                _end_request(span, ctx, outcome.status if isinstance(outcome, JsonOutcome) else 200)
            return outcome

        pipeline.resolve = resolve  # type: ignore[method-assign]
        pipeline.handle = handle  # type: ignore[method-assign]

    async def shutdown(self, timeout_s: float = 5.0) -> None:
        """Export what is buffered; bounded, since the collector may be down."""
        worker = threading.Thread(target=self.provider.shutdown, name="lockgate-otel-shutdown", daemon=True)
        worker.start()
        await asyncio.to_thread(worker.join, timeout_s)


class _Traced:
    """A stage object whose one async method runs inside a span; everything else passes through."""

    _METHODS = {"authenticate": "authenticate", "admit": "admit"}

    def __init__(self, inner: Any, stage: str, tracer: Any, name: str | None = None) -> None:
        self._inner, self._stage, self._tracer, self._name = inner, stage, tracer, name or stage

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._inner, attr)
        if attr != self._METHODS[self._stage]:
            return value

        async def traced(*args: Any, **kwargs: Any) -> Any:
            with self._tracer.start_as_current_span(self._name) as span:
                try:
                    return await value(*args, **kwargs)
                except GatewayError as err:
                    span.set_attribute("error.type", err.kind)
                    span.set_status(Status(StatusCode.ERROR, err.kind))
                    raise
                finally:
                    if self._stage == "authenticate":
                        _AUTH_END.set(time.time_ns())  # resolve() dates the parse stage from here

        return traced


class _TracedRouter:
    """The router, with a ``route`` span around the call and one CLIENT span per attempt."""

    def __init__(self, inner: Any, tracer: Any) -> None:
        self._inner, self._tracer = inner, tracer

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    async def call(self, route: Any, op: Callable[[Any], Any], attempts: list[Any], *args: Any, **kwargs: Any) -> Any:
        tracer = self._tracer

        async def traced_op(upstream: Any, *a: Any, **kw: Any) -> Any:
            dep = upstream.config
            operation = _OPERATION_NAME.get()
            attributes = {
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
                    result = await op(upstream, *a, **kw)
                except GatewayError as err:
                    span.set_attribute("error.type", err.kind)
                    span.set_status(Status(StatusCode.ERROR, err.kind))
                    raise
                _describe_result(span, result)
                return result

        with tracer.start_as_current_span("route", attributes={"lockgate.model": route.name}) as span:
            try:
                return await self._inner.call(route, traced_op, attempts, *args, **kwargs)
            finally:
                span.set_attribute("lockgate.attempts", len(attempts))


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
