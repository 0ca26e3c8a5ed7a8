"""The request's way through the gateway, stage by stage:

    authenticate → parse → resolve model → admit → route and call → relay → record

``Pipeline.handle`` never raises: it returns an Outcome (a JSON body or an SSE
byte stream, with status and headers) that the web layer only encodes. Every
request ends in exactly one RequestRecord, emitted when the answer (or the
stream) is finished; failed attempts that were retried get records of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import structlog

from lockgate.auth import Authenticator, Principal
from lockgate.context import Admission, RequestContext
from lockgate.errors import GatewayError, GatewayInternal, ModelNotFound, PermissionDenied, render
from lockgate.pipeline_hooks import PipelineHooks
from lockgate.providers.base import ProviderStream, Usage, estimate_tokens, tokens_for_chars
from lockgate.records import RequestRecord, SinkQueue
from lockgate.router import ModelRoute, Router, Upstream
from lockgate.routing.resume import RoutedStream
from lockgate.schemas import parse_body
from lockgate.usage.pricing import NO_COST, Cost, call_cost

T = TypeVar("T")
log = structlog.get_logger("lockgate.pipeline")

SSE_DONE = b"data: [DONE]\n\n"
STATUS_CLIENT_CLOSED = 499  # nginx's convention for "the client went away"


@dataclass(slots=True)
class JsonOutcome:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class StreamOutcome:
    chunks: AsyncIterator[bytes]
    headers: dict[str, str]
    status: int = 200
    # Called by the web layer when the response is over, however it ended: releases the
    # upstream and records the request if the relay never started (client gone at once).
    abandon: Callable[[], Awaitable[None]] | None = None


Outcome = JsonOutcome | StreamOutcome

_CALLS = {
    ("chat", False): "chat",
    ("chat", True): "chat_stream",
    ("completions", False): "completions",
    ("completions", True): "completions_stream",
    ("embeddings", False): "embeddings",
    # Ingress dialects call the canonical chat methods.
    ("messages", False): "chat",
    ("messages", True): "chat_stream",
    ("responses", False): "chat",
    ("responses", True): "chat_stream",
}


class Pipeline:
    def __init__(
        self,
        authenticator: Authenticator,
        router: Router,
        sinks: SinkQueue,
        admissions: list[Admission] | None = None,
        *,
        hooks: PipelineHooks | None = None,
        capture_content: bool = False,
    ) -> None:
        self.authenticator = authenticator
        self.router = router
        self.sinks = sinks
        self.admissions = admissions or []
        # Observers of the stages (tracing); None means none is ever called.
        self.hooks = hooks
        # True when analytics may see prompts and completions (PostHog privacy_mode: false).
        self.capture_content = capture_content

    def observe(self, hooks: PipelineHooks | None) -> None:
        """Attach (or detach) stage hooks after construction (tests trace a running gateway)."""
        self.hooks = hooks

    # --- the stages ----------------------------------------------------------------

    async def handle(self, ctx: RequestContext, raw: bytes, headers: Mapping[str, str]) -> Outcome:
        if self.hooks is not None:
            return await self.hooks.request(ctx, self._handle(ctx, raw, headers, self.hooks))
        return await self._handle(ctx, raw, headers, None)

    async def _handle(self, ctx: RequestContext, raw: bytes, headers: Mapping[str, str], hooks: PipelineHooks | None) -> Outcome:
        try:
            if hooks is None:
                ctx.principal = principal = await self.authenticator.authenticate(headers, ctx.client)
                ctx.body = body = self._parse(ctx, raw)
                ctx.route = route = self.resolve(body["model"], principal)
            else:
                with hooks.stage("authenticate"):
                    ctx.principal = principal = await self.authenticator.authenticate(headers, ctx.client)
                with hooks.stage("parse"):
                    ctx.body = body = self._parse(ctx, raw)
                with hooks.stage("resolve", {"gen_ai.request.model": body["model"]}):
                    ctx.route = route = self.resolve(body["model"], principal)
            ctx.stream = bool(body.get("stream")) and ctx.endpoint != "embeddings"
            options = body.get("stream_options")
            ctx.include_usage = bool(ctx.stream and isinstance(options, dict) and options.get("include_usage"))
            if self.capture_content:
                ctx.content = {"input": body.get("messages", body.get("prompt", body.get("input")))}
            for admission in self.admissions:
                if hooks is None:
                    await admission.admit(ctx)
                else:
                    with hooks.stage(f"admit {type(admission).__name__}"):
                        await admission.admit(ctx)
            upstream_body = body  # rewritten per deployment in the call below
            if ctx.stream:
                return await self._stream(ctx, route, upstream_body)
            return await self._complete(ctx, route, upstream_body)
        except GatewayError as err:
            return self.fail(ctx, err)
        except Exception:
            log.exception("request_failed", request_id=ctx.request_id)
            return self.fail(ctx, GatewayInternal("The gateway failed to process this request."))
        except asyncio.CancelledError:
            # Cancelled before an answer (client gone, server stopping): the one place besides the
            # answers themselves that ends a request, so its record is kept and what admission
            # took (parallel slots, budget holds, token estimates) is given back.
            self._finish(ctx, STATUS_CLIENT_CLOSED, None, partial=True)
            raise

    def _parse(self, ctx: RequestContext, raw: bytes) -> dict[str, Any]:
        return ctx.ingress.parse(raw) if ctx.ingress is not None else parse_body(ctx.endpoint, raw)

    async def _route(
        self, ctx: RequestContext, route: ModelRoute, op: Callable[[Upstream], Awaitable[T]], hold: bool = False
    ) -> T:
        """The router's call for this request, inside the hooks when there are any."""
        hooks = self.hooks
        if hooks is None:
            return await self.router.call(route, op, ctx.attempts, hold=hold, only=ctx.pin)
        with hooks.route(route, ctx.attempts):
            return await self.router.call(route, hooks.attempt(ctx, ctx.attempts, op), ctx.attempts, hold=hold, only=ctx.pin)

    def resolve(self, model: str, principal: Principal) -> ModelRoute:
        route = self.router.get(model)
        if route is None:
            raise ModelNotFound(model)
        if not principal.allows(model):
            raise PermissionDenied(f"This key is not allowed to use the model `{model}`.", param="model")
        return route

    def fail(self, ctx: RequestContext, err: GatewayError) -> JsonOutcome:
        """Render an error and record the request (used by the web layer for errors before the pipeline)."""
        # Which deployments were tried shows on errors too.
        rendered = render(err, headers=self._served_headers(ctx) if ctx.attempts else ctx.headers)
        self._finish(ctx, err.status, err)
        if ctx.ingress is not None:
            # The headers (Retry-After…) as rendered; status and body in the ingress's own dialect.
            status, body = ctx.ingress.error(err)
            return JsonOutcome(status, body, rendered.headers)
        return JsonOutcome(rendered.status, rendered.body, rendered.headers)

    # --- route and call ------------------------------------------------------------------

    def _call_body(self, ctx: RequestContext, upstream: Upstream, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "model": upstream.config.model}

    def _provider_call(self, ctx: RequestContext, upstream: Upstream, method: str, body: dict[str, Any]) -> Any:
        """The upstream call for one attempt: the ingress's own (pass-through) when the deployment speaks its dialect."""
        if ctx.ingress is not None and ctx.route is not None:
            native = ctx.ingress.native_call(upstream, ctx.route.name, stream=method.endswith("_stream"))
            if native is not None:
                return native
            body = ctx.ingress.translated_body(upstream, body)
        return getattr(upstream.provider, method)(self._call_body(ctx, upstream, body))

    def _served_headers(self, ctx: RequestContext) -> dict[str, str]:
        upstream = ctx.upstream
        headers = dict(ctx.headers)
        if upstream is not None:
            headers["x-lockgate-deployment"] = upstream.id
        headers["x-lockgate-attempts"] = str(len(ctx.attempts))
        return headers

    async def _complete(self, ctx: RequestContext, route: ModelRoute, body: dict[str, Any]) -> JsonOutcome:
        method = _CALLS[(ctx.endpoint, False)]

        async def call(upstream: Upstream) -> Any:
            return await self._provider_call(ctx, upstream, method, body)

        try:
            result = await self._route(ctx, route, call)
        finally:
            self._record_failed_attempts(ctx)
        result.body["model"] = route.name
        ctx.usage = result.usage
        if ctx.content is not None:
            ctx.content["output_choices"] = result.body.get("choices")
        self._finish(ctx, 200)
        payload = ctx.ingress.render(ctx, result.body) if ctx.ingress is not None else orjson.dumps(result.body)
        return JsonOutcome(200, payload, self._served_headers(ctx))

    async def _stream(self, ctx: RequestContext, route: ModelRoute, body: dict[str, Any]) -> StreamOutcome:
        method = _CALLS[(ctx.endpoint, True)]

        # Open the stream and read its first chunk inside the router, so that an
        # upstream that fails before its first byte can still be failed over.
        def opener(body: dict[str, Any]) -> Any:
            async def call(upstream: Upstream) -> tuple[ProviderStream, AsyncIterator[dict[str, Any]], dict[str, Any] | None]:
                stream: ProviderStream = await self._provider_call(ctx, upstream, method, body)
                chunks = stream.__aiter__()
                try:
                    first = await chunks.__anext__()
                except StopAsyncIteration:
                    first = None
                except BaseException:
                    await stream.aclose()
                    raise
                return stream, chunks, first

            return call

        try:
            opened = await self._route(ctx, route, opener(body), hold=True)
        finally:
            self._record_failed_attempts(ctx)
        # Reports mid-stream breaks to the router; resumes elsewhere when the model opts in.
        resume = route.group.stream_resume and ctx.endpoint == "chat"
        reopen = opener
        hooks = self.hooks
        if hooks is not None:  # a resumed attempt is observed like the first ones

            def reopen(body: dict[str, Any]) -> Any:
                return hooks.attempt(ctx, ctx.attempts, opener(body))

        routed = RoutedStream(self.router, route, opened, ctx.attempts, body=body, reopen=reopen if resume else None)
        first = opened[2]
        relay = self._relay(ctx, route, routed, routed.__aiter__(), first)

        async def abandon() -> None:
            if ctx.relay_started:
                return  # the relay's own clean-up ran or is running
            ctx.relay_started = True
            await routed.aclose()
            self._record_failed_attempts(ctx)
            self._finish(ctx, STATUS_CLIENT_CLOSED, None, partial=True)

        return StreamOutcome(relay, self._served_headers(ctx), abandon=abandon)

    # --- relay -------------------------------------------------------------------------------

    async def _relay(
        self,
        ctx: RequestContext,
        route: ModelRoute,
        stream: ProviderStream,
        chunks: AsyncIterator[dict[str, Any]],
        first: dict[str, Any] | None,
    ) -> AsyncIterator[bytes]:
        """Encode chunks as SSE the moment they arrive; record the request when the stream ends."""
        ctx.relay_started = True
        public = route.name
        include_usage = ctx.include_usage
        delivered_chars = 0
        parts: dict[int, list[str]] | None = {} if ctx.content is not None else None
        status, error = STATUS_CLIENT_CLOSED, None
        frames = ctx.ingress.frames(ctx) if ctx.ingress is not None else None  # the dialect's SSE framing
        chunk = first
        try:
            try:
                while chunk is not None:
                    choices = chunk.get("choices")
                    if choices or include_usage or not chunk.get("usage"):
                        if not include_usage and "usage" in chunk and chunk["usage"] is None:
                            del chunk["usage"]
                        if frames is None:
                            chunk["model"] = public  # an ingress frames the chunk itself
                        for choice in choices or ():
                            delta = choice.get("delta")
                            text = delta.get("content") if delta else choice.get("text")
                            if text:
                                delivered_chars += len(text)
                                if parts is not None:
                                    parts.setdefault(choice.get("index", 0), []).append(text)
                        if ctx.ttft_ms is None:
                            ctx.ttft_ms = (time.perf_counter() - ctx.started) * 1000
                        yield frames.chunk(chunk) if frames is not None else b"data: " + orjson.dumps(chunk) + b"\n\n"
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        chunk = None
                yield frames.done() if frames is not None else SSE_DONE
                status = 200
            except GatewayError as err:
                # The response has started: the error travels in the stream, as OpenAI's does.
                status, error = err.status, err
                yield frames.error(err) if frames is not None else b"data: " + render(err).body + b"\n\n"
        finally:
            await stream.aclose()
            ctx.usage = stream.usage
            if ctx.usage is None and delivered_chars:
                # The upstream never reported usage (cut short): count what was relayed.
                prompt = ctx.body.get("messages") or ctx.body.get("prompt") or "" if ctx.body else ""
                ctx.usage = Usage(
                    prompt_tokens=estimate_tokens(orjson.dumps(prompt).decode()),
                    completion_tokens=tokens_for_chars(delivered_chars),
                    estimated=True,
                )
            self._record_failed_attempts(ctx)  # a resumed stream's broken attempts
            if ctx.content is not None and parts is not None:
                ctx.content["output_choices"] = [
                    {"index": i, "message": {"role": "assistant", "content": "".join(t)}} for i, t in sorted(parts.items())
                ]
            self._finish(ctx, status, error, partial=status != 200)

    # --- record --------------------------------------------------------------------------------

    def _record_failed_attempts(self, ctx: RequestContext) -> None:
        """Failed tries that were followed by another get their own records, linked to the request."""
        # The last attempt is the request's own record.
        for attempt in ctx.attempts[:-1]:
            if attempt.error is None or attempt.recorded:
                continue
            attempt.recorded = True
            self.sinks.emit(
                build_record(
                    ctx,
                    attempt.upstream,
                    attempt.error.status,
                    attempt.error,
                    request_id=f"{ctx.request_id}.{attempt.number}",
                    latency_ms=attempt.latency_ms,
                    attempt=attempt.number,
                )
            )

    def _finish(self, ctx: RequestContext, status: int, err: GatewayError | None = None, partial: bool = False) -> None:
        upstream = ctx.upstream
        record = build_record(
            ctx,
            upstream,
            status,
            err,
            latency_ms=round((time.perf_counter() - ctx.started) * 1000, 3),
            usage=ctx.usage,
            cost=call_cost(upstream.price if upstream else None, ctx.usage),  # the price was resolved at start-up
            partial=partial,
        )
        for admission in self.admissions:
            try:
                admission.settle(ctx, record)
            except Exception:
                log.exception("settle_failed", request_id=ctx.request_id)
        self.sinks.emit(record)


def build_record(
    ctx: RequestContext,
    upstream: Upstream | None,
    status: int,
    err: GatewayError | None,
    *,
    latency_ms: float,
    request_id: str | None = None,
    attempt: int | None = None,
    usage: Usage | None = None,
    cost: Cost | None = NO_COST,
    partial: bool = False,
) -> RequestRecord:
    """The one RequestRecord builder: the request's own record, or (``attempt`` set) one failed try's.

    A failed try's record is linked to its request, counts one attempt, has no usage and
    carries only the prompt of any captured content; the request's own carries the rest.
    """
    principal, body = ctx.principal, ctx.body
    own = attempt is None
    if ctx.route is not None:
        public_model: str | None = ctx.route.name
    else:
        public_model = body.get("model") if own and body and isinstance(body.get("model"), str) else None
    if not own and ctx.content is not None:
        content: dict[str, Any] | None = {"input": ctx.content["input"]}
    else:
        content = ctx.content
    return RequestRecord(
        request_id=request_id or ctx.request_id,
        parent_request_id=None if own else ctx.request_id,
        attempt=attempt,
        endpoint=ctx.endpoint,
        public_model=public_model,
        status=status,
        started_at=ctx.started_at,
        latency_ms=latency_ms,
        streamed=ctx.stream,
        key_id=principal.key_id if principal else None,
        user=principal.user if principal else None,
        team=principal.team if principal else None,
        provider=upstream.config.provider if upstream else None,
        deployment=upstream.id if upstream else None,
        upstream_model=upstream.config.model if upstream else None,
        api_base=upstream.api_base if upstream else None,
        attempts=len(ctx.attempts) if own else 1,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        cached_tokens=usage.cached_tokens if usage else 0,
        cache_creation_tokens=usage.cache_creation_tokens if usage else 0,
        reasoning_tokens=usage.reasoning_tokens if usage else 0,
        usage_estimated=usage.estimated if usage else False,
        # None: tokens were used but the price is unknown.
        cost_usd=cost.total_usd if cost else None,
        input_cost_usd=cost.input_usd if cost else None,
        output_cost_usd=cost.output_usd if cost else None,
        ttft_ms=round(ctx.ttft_ms, 3) if own and ctx.ttft_ms is not None else None,
        error_type=err.kind if err else ("client_closed" if status == STATUS_CLIENT_CLOSED else None),
        error_message=err.message if err else None,
        partial=partial,
        content=content,
        # Fields only an ingress knows (e.g. the Claude Code session id), on the request's own record.
        extra=dict(ctx.ingress.record_extra) if own and ctx.ingress is not None else {},
    )
