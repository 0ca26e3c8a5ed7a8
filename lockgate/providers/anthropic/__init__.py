"""The Anthropic Messages protocol behind the OpenAI seam.

Translation lives in pure modules (messages, request, response, stream); this
module only does the HTTP: one POST to ``{api_base}/v1/messages`` per call.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from lockgate.config import AnthropicDeployment
from lockgate.errors import InvalidRequest, ProviderBadResponse, ProviderTruncated
from lockgate.providers.anthropic.errors import ERROR_STATUS
from lockgate.providers.anthropic.native import NativeStream, usage_of_message
from lockgate.providers.anthropic.request import completions_to_chat, to_anthropic
from lockgate.providers.anthropic.response import chat_completion, text_completion
from lockgate.providers.anthropic.stream import ChunkTranslator, text_completion_chunk
from lockgate.providers.base import ProviderResult
from lockgate.providers.http import JsonPoster, StreamTimer, drain_in_background, json_object, upstream_name
from lockgate.providers.sse_stream import UpstreamStream

__all__ = ["AnthropicProvider", "AnthropicStream"]

DEFAULT_API_BASE = "https://api.anthropic.com"


class AnthropicStream(UpstreamStream[dict[str, Any]]):
    """An open Anthropic SSE stream, yielding OpenAI chunk dicts as its events arrive."""

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        translator: ChunkTranslator,
        what: str,
        timer: StreamTimer,
        *,
        legacy: bool = False,
    ) -> None:
        super().__init__(resp, what, timer)
        self._translator = translator
        self._legacy = legacy
        # usage is known once message_stop arrives (partial and estimated if the stream breaks off).

    def on_event(self, name: str | None, data: bytes) -> list[dict[str, Any]]:
        translator = self._translator
        chunks = translator.feed(json_object(data, self._what))
        if self._legacy:
            chunks = [legacy for legacy in map(text_completion_chunk, chunks) if legacy is not None]
        if translator.finished:
            # Done at message_stop: the client's last chunk goes out now, and the body's end
            # (which follows at once) is read in the background so the connection is reused.
            self.usage = translator.usage
            self.done = self.draining = True
            drain_in_background(self._resp)
        return chunks

    def on_end(self) -> None:
        if not self._translator.finished:
            self.on_broken()
            raise ProviderTruncated(f"The upstream {self._what} ended its stream before finishing.")

    def on_broken(self) -> None:
        self._translator.broken_off()  # records the partial usage
        self.usage = self._translator.usage


class AnthropicProvider:
    """Talks Anthropic's Messages API to one deployment, in OpenAI shapes."""

    name = "anthropic"

    def __init__(self, deployment: AnthropicDeployment, session: aiohttp.ClientSession) -> None:
        base = (deployment.api_base or DEFAULT_API_BASE).rstrip("/")
        # Accept an api_base given with or without the /v1 suffix.
        self._url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        self._count_url = self._url + "/count_tokens"
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "anthropic-version": deployment.anthropic_version,
        }
        if deployment.api_key is not None:
            headers["x-api-key"] = deployment.api_key.get_secret_value()
        if deployment.anthropic_beta:
            headers["anthropic-beta"] = deployment.anthropic_beta
        headers.update(deployment.headers)
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}
        self._max_tokens_default = deployment.max_tokens_default
        # Errors map by error.type; Anthropic's rate-limit headers are deliberately not passed on.
        self._http = JsonPoster(session, upstream_name(deployment.model, base), deployment, ERROR_STATUS)

    async def chat(self, body: dict[str, Any]) -> ProviderResult:
        payload, ctx = to_anthropic(body, max_tokens_default=self._max_tokens_default)
        payload.pop("stream", None)
        resp = await self._http.post(self._url, payload, self._headers)
        message = await self._http.read_json(resp)
        completion, usage = chat_completion(message, ctx)
        return ProviderResult(body=completion, usage=usage)

    async def chat_stream(self, body: dict[str, Any]) -> AnthropicStream:
        return await self._open_stream(body, legacy=False)

    async def _open_stream(self, body: dict[str, Any], *, legacy: bool) -> AnthropicStream:
        payload, ctx = to_anthropic(body, max_tokens_default=self._max_tokens_default)
        payload["stream"] = True
        resp, timer = await self._http.post_stream(self._url, payload, self._stream_headers)
        what = self._http.what
        if resp.content_type != "text/event-stream":
            timer.cancel()
            resp.close()
            raise ProviderBadResponse(f"The upstream {what} did not answer with an event stream.")
        return AnthropicStream(resp, ChunkTranslator(ctx, what=what), what, timer, legacy=legacy)

    async def completions(self, body: dict[str, Any]) -> ProviderResult:
        result = await self.chat(completions_to_chat(body))
        return ProviderResult(body=text_completion(result.body), usage=result.usage)

    async def completions_stream(self, body: dict[str, Any]) -> AnthropicStream:
        return await self._open_stream(completions_to_chat(body), legacy=True)

    # --- Messages pass-through (the /v1/messages ingress) ---------------------------------------

    def _native_headers(self, base: dict[str, str], beta: str | None) -> dict[str, str]:
        if not beta:
            return base
        own = base.get("anthropic-beta")
        return {**base, "anthropic-beta": f"{own},{beta}" if own else beta}

    async def messages(self, body: dict[str, Any], public_model: str, *, beta: str | None = None) -> ProviderResult:
        """A Messages body as the client sent it (model already the upstream's); the Message back as is."""
        payload = {**body, "stream": False} if "stream" in body else body
        resp = await self._http.post(self._url, payload, self._native_headers(self._headers, beta))
        message = await self._http.read_json(resp)
        if message.get("type") != "message":
            raise ProviderBadResponse(f"The upstream {self._http.what} answered with something that is not a Message.")
        message["model"] = public_model
        return ProviderResult(body=message, usage=usage_of_message(message))

    async def messages_stream(self, body: dict[str, Any], public_model: str, *, beta: str | None = None) -> NativeStream:
        headers = self._native_headers(self._stream_headers, beta)
        resp, timer = await self._http.post_stream(self._url, {**body, "stream": True}, headers)
        if resp.content_type != "text/event-stream":
            timer.cancel()
            resp.close()
            raise ProviderBadResponse(f"The upstream {self._http.what} did not answer with an event stream.")
        return NativeStream(resp, self._http.what, timer, public_model)

    async def count_tokens(self, body: dict[str, Any], *, beta: str | None = None) -> int:
        """Anthropic's own count for a Messages body (model already the upstream's)."""
        resp = await self._http.post(self._count_url, body, self._native_headers(self._headers, beta))
        answer = await self._http.read_json(resp)
        count = answer.get("input_tokens")
        if not isinstance(count, int):
            raise ProviderBadResponse(f"The upstream {self._http.what} answered count_tokens without input_tokens.")
        return count

    async def embeddings(self, body: dict[str, Any]) -> ProviderResult:
        raise InvalidRequest("Anthropic models have no embeddings; use an embedding model.", param="model")

    async def aclose(self) -> None:
        """The pool owns the session."""
