"""The Messages ingress as the pipeline sees it: parse in, render out, in Anthropic's dialect.

The pipeline stays canonical (OpenAI chat); this object is its only contact with the
Messages wire format. No web framework here.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import orjson

from lockgate.errors import GatewayError, InvalidRequest
from lockgate.errors_anthropic import anthropic_type, render_error
from lockgate.ingress.base import clamp_output_tokens
from lockgate.ingress.messages.pings import PING_INTERVAL_S, with_pings
from lockgate.ingress.messages.request import to_chat, without_unsigned_thinking
from lockgate.ingress.messages.response import to_message
from lockgate.ingress.messages.stream import MessagesStreamEncoder, sse
from lockgate.providers.base import estimate_tokens
from lockgate.schemas import decode_object

decode = decode_object  # the same JSON-object rule as the OpenAI endpoints
__all__ = ["PING_INTERVAL_S", "MessagesIngress", "decode", "with_pings"]


class StreamFrames:
    """The pipeline's relay hooks for one stream: chunk -> SSE bytes, end, error."""

    def __init__(self, model: str, input_estimate: int) -> None:
        self.encoder = MessagesStreamEncoder(model, input_tokens=input_estimate)

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        return self.encoder.feed(chunk)

    def done(self) -> bytes:
        return self.encoder.finish()

    def error(self, err: GatewayError) -> bytes:
        return self.encoder.fail(anthropic_type(err), err.message)


class NativeFrames:
    """Relay hooks for a pass-through stream: the upstream's own event bytes, as they came."""

    def chunk(self, event: dict[str, Any]) -> bytes:
        return getattr(event, "raw", b"")

    def done(self) -> bytes:
        return b""  # message_stop was the upstream's last event, already relayed

    def error(self, err: GatewayError) -> bytes:
        return sse({"type": "error", "error": {"type": anthropic_type(err), "message": err.message}})


class MessagesIngress:
    """One request's dialect: created by the web layer, set on RequestContext.ingress."""

    endpoint = "messages"

    def __init__(self, request_id: str, *, beta: str | None = None) -> None:
        self.request_id = request_id
        self.beta = beta  # the client's anthropic-beta header, for Anthropic deployments only
        self.original: dict[str, Any] | None = None  # the body as the client sent it
        self.native = False  # whether the current attempt passes through (set per attempt)
        self.record_extra: dict[str, Any] = {}  # added to the request's record
        self.translation_error: InvalidRequest | None = None  # the body cannot be translated to chat

    def native_call(self, upstream: Any, public_model: str, *, stream: bool) -> Awaitable[Any] | None:
        """The pass-through call for a deployment that speaks Messages itself, else None (translate)."""
        provider = upstream.provider
        self.native = self.original is not None and hasattr(provider, "messages_stream")
        if not self.native:
            if self.translation_error is not None:
                raise self.translation_error  # a caller error: not held against the deployment
            return None
        body = {**without_unsigned_thinking(self.original), "model": upstream.config.model}  # type: ignore[arg-type]
        if stream:
            return provider.messages_stream(body, public_model, beta=self.beta)
        return provider.messages(body, public_model, beta=self.beta)

    def translated_body(self, upstream: Any, chat_body: dict[str, Any]) -> dict[str, Any]:
        return clamp_output_tokens(upstream, chat_body)

    def parse(self, raw: bytes) -> dict[str, Any]:
        self.original = body = decode(raw)
        try:
            return to_chat(body)
        except InvalidRequest as err:
            # Blocks, tools or fields with no chat equivalent (server tools, tool_reference, new
            # block types) are still fine for an Anthropic deployment, which gets the body as sent:
            # the error is raised only if a deployment that needs the translation is chosen.
            if not isinstance(body.get("model"), str) or not body["model"]:
                raise
            self.translation_error = err
            return {
                "model": body["model"],
                # What limits and estimates need: the prompt's size, the stream flag.
                "messages": [{"role": "user", "content": orjson.dumps(body.get("messages")).decode()}],
                **({"stream": True, "stream_options": {"include_usage": True}} if body.get("stream") is True else {}),
            }

    def render(self, ctx: Any, chat_body: dict[str, Any]) -> bytes:
        if self.native:
            return orjson.dumps(chat_body)  # the upstream's Message, model already rewritten
        model = ctx.route.name if ctx.route else str(chat_body.get("model"))
        return orjson.dumps(to_message(chat_body, model=model, usage=ctx.usage))

    def frames(self, ctx: Any) -> StreamFrames | NativeFrames:
        if self.native:
            return NativeFrames()
        messages = ctx.body.get("messages") if ctx.body else None
        return StreamFrames(ctx.route.name, estimate_tokens(orjson.dumps(messages).decode()) if messages else 0)

    def error(self, err: GatewayError) -> tuple[int, bytes]:
        return render_error(err, self.request_id)
