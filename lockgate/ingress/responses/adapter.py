"""The Responses ingress as the pipeline sees it: parse in, render out, in the Responses dialect.

Two ways to serve it, chosen per deployment (per attempt): a deployment configured with
`responses: native` gets the client's body passed through to its own /responses
(native.py); every other deployment is served by translating through canonical chat
(the Anthropic provider translates chat on to Messages itself). Errors keep OpenAI's
shape. No web framework here.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import orjson

from lockgate.errors import GatewayError, InvalidRequest, render
from lockgate.ingress.base import clamp_output_tokens
from lockgate.ingress.responses.native import NativeFrames, native_body
from lockgate.ingress.responses.request import input_items, to_chat
from lockgate.ingress.responses.response import new_id, to_response
from lockgate.ingress.responses.stream import ResponsesStreamEncoder
from lockgate.providers.base import ProviderResult, estimate_tokens
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
        # The deployment holding previous_response_id upstream (a native one, pinned), if any.
        self.previous_at: str | None = None
        self.original: dict[str, Any] = {}  # the body as the client sent it
        self.record_extra: dict[str, Any] = {"response_id": self.response_id}
        self.encoder: ResponsesStreamEncoder | None = None
        self.native_frames: NativeFrames | None = None
        self.native = False  # whether the current attempt passes through (set per attempt)
        self.translation_error: InvalidRequest | None = None  # the body cannot be translated to chat
        self.result: dict[str, Any] | None = None  # the finished Response (JSON), for the store

    def parse(self, raw: bytes) -> dict[str, Any]:
        if not self.original:
            self.original = decode(raw)  # unless the web layer already did (it reads previous_response_id)
        body = self.original
        try:
            return to_chat(body, self.history)
        except InvalidRequest as err:
            # Hosted tools, item types or fields with no chat equivalent are fine for a native
            # deployment, which gets the body as sent: refused only if a translated one is chosen.
            if not isinstance(body.get("model"), str) or not body["model"] or err.param == "model":
                raise
            self.translation_error = err
            return {
                "model": body["model"],
                # What limits and estimates need: the prompt's size, the stream flag.
                "messages": [{"role": "user", "content": orjson.dumps(body.get("input")).decode()}],
                **({"stream": True, "stream_options": {"include_usage": True}} if body.get("stream") is True else {}),
            }

    def new_items(self) -> list[dict[str, Any]]:
        """This turn's input items, as stored for input_items and later turns."""
        return input_items(self.original)

    def native_call(self, upstream: Any, public_model: str, *, stream: bool) -> Awaitable[Any] | None:
        """The pass-through call for a deployment that serves /responses itself, else None (translate)."""
        provider = upstream.provider
        self.native = hasattr(provider, "responses_stream")
        if not self.native:
            if self.translation_error is not None:
                raise self.translation_error  # a caller error: not held against the deployment
            return None
        body = native_body(self.original, upstream.config.model, self.history, self.previous_at == upstream.id)
        if stream:
            estimate = estimate_tokens(orjson.dumps(body.get("input")).decode())
            return provider.responses_stream(body, public_model, input_estimate=estimate)  # type: ignore[no-any-return]
        return self._complete(provider, body, public_model)

    async def _complete(self, provider: Any, body: dict[str, Any], public_model: str) -> ProviderResult:
        result: ProviderResult = await provider.responses(body, public_model)
        if isinstance(result.body.get("id"), str):
            self.record_extra["response_id"] = result.body["id"]  # the upstream's id is the client's
        return result

    def translated_body(self, upstream: Any, chat_body: dict[str, Any]) -> dict[str, Any]:
        return clamp_output_tokens(upstream, chat_body)

    def render(self, ctx: Any, chat_body: dict[str, Any]) -> bytes:
        if self.native:
            self.result = chat_body  # the upstream's Response, model already rewritten
            return orjson.dumps(chat_body)
        model = ctx.route.name if ctx.route else str(chat_body.get("model"))
        self.result = to_response(chat_body, self.original, response_id=self.response_id, model=model, usage=ctx.usage)
        return orjson.dumps(self.result)

    def frames(self, ctx: Any) -> StreamFrames | NativeFrames:
        if self.native:
            self.native_frames = NativeFrames(self.original, ctx.route.name, self.record_extra)
            return self.native_frames
        messages = ctx.body.get("messages") if ctx.body else None
        estimate = estimate_tokens(orjson.dumps(messages).decode()) if messages else 0
        self.encoder = ResponsesStreamEncoder(
            self.original, response_id=self.response_id, model=ctx.route.name, input_tokens=estimate
        )
        return StreamFrames(self.encoder)

    def finished_response(self) -> dict[str, Any] | None:
        """A stream's response once it completed (or stopped incomplete): what the store keeps."""
        if self.native_frames is not None:
            return self.native_frames.finished_response()
        encoder = self.encoder
        if encoder is not None and encoder.finished and encoder.response["status"] in ("completed", "incomplete"):
            return encoder.response
        return None

    def error(self, err: GatewayError) -> tuple[int, bytes]:
        rendered = render(err)
        return rendered.status, rendered.body
