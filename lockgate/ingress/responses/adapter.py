"""The Responses ingress as the pipeline sees it: parse in, render out, in the Responses dialect.

Every deployment is served by translating through canonical chat (the Anthropic
provider translates chat on to Messages itself); native pass-through to an
upstream's own /v1/responses is not implemented yet. Errors keep OpenAI's shape.
No web framework here.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import orjson

from lockgate.errors import GatewayError, render
from lockgate.ingress.base import clamp_output_tokens
from lockgate.ingress.responses.request import input_items, to_chat
from lockgate.ingress.responses.response import new_id, to_response
from lockgate.ingress.responses.stream import ResponsesStreamEncoder
from lockgate.providers.base import estimate_tokens
from lockgate.schemas import decode_object as decode


class StreamFrames:
    """The pipeline's relay hooks for one stream: chunk -> Responses SSE events, end, error."""

    def __init__(self, encoder: ResponsesStreamEncoder) -> None:
        self.encoder = encoder

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        return self.encoder.feed(chunk)

    def done(self) -> bytes:
        return self.encoder.finish()

    def error(self, err: GatewayError) -> bytes:
        return self.encoder.fail(err.code or "server_error", err.message)


class ResponsesIngress:
    """One request's dialect: created by the web layer, set on RequestContext.ingress."""

    endpoint = "responses"

    def __init__(self, request_id: str, *, history: list[dict[str, Any]] | None = None) -> None:
        self.request_id = request_id
        self.response_id = new_id("resp")
        self.history = history or []  # earlier turns' items (previous_response_id), oldest first
        self.original: dict[str, Any] = {}  # the body as the client sent it
        self.record_extra: dict[str, Any] = {"response_id": self.response_id}
        self.encoder: ResponsesStreamEncoder | None = None
        self.result: dict[str, Any] | None = None  # the finished Response (JSON), for the store

    def parse(self, raw: bytes) -> dict[str, Any]:
        if not self.original:
            self.original = decode(raw)  # unless the web layer already did (it reads previous_response_id)
        return to_chat(self.original, self.history)

    def new_items(self) -> list[dict[str, Any]]:
        """This turn's input items, as stored for input_items and later turns."""
        return input_items(self.original)

    def native_call(self, upstream: Any, public_model: str, *, stream: bool) -> Awaitable[Any] | None:
        return None  # always translated through chat (see the module docstring)

    def translated_body(self, upstream: Any, chat_body: dict[str, Any]) -> dict[str, Any]:
        return clamp_output_tokens(upstream, chat_body)

    def render(self, ctx: Any, chat_body: dict[str, Any]) -> bytes:
        model = ctx.route.name if ctx.route else str(chat_body.get("model"))
        self.result = to_response(chat_body, self.original, response_id=self.response_id, model=model, usage=ctx.usage)
        return orjson.dumps(self.result)

    def frames(self, ctx: Any) -> StreamFrames:
        messages = ctx.body.get("messages") if ctx.body else None
        estimate = estimate_tokens(orjson.dumps(messages).decode()) if messages else 0
        self.encoder = ResponsesStreamEncoder(
            self.original, response_id=self.response_id, model=ctx.route.name, input_tokens=estimate
        )
        return StreamFrames(self.encoder)

    def error(self, err: GatewayError) -> tuple[int, bytes]:
        rendered = render(err)
        return rendered.status, rendered.body
