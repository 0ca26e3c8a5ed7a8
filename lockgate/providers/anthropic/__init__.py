"""The Anthropic Messages protocol behind the OpenAI seam.

Translation lives in pure modules (messages, request, response, stream); this
module only does the HTTP: one POST to ``{api_base}/v1/messages`` per call.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import aiohttp
import orjson

from lockgate.config import Deployment
from lockgate.errors import GatewayError, InvalidRequest, ProviderBadResponse
from lockgate.providers.anthropic.errors import ERROR_STATUS
from lockgate.providers.anthropic.request import completions_to_chat, to_anthropic
from lockgate.providers.anthropic.response import chat_completion, text_completion
from lockgate.providers.anthropic.stream import ChunkTranslator, text_completion_chunk
from lockgate.providers.base import ProviderResult, Usage
from lockgate.providers.http import error_from_response, iter_sse, transport_error

__all__ = ["AnthropicProvider", "AnthropicStream"]

DEFAULT_API_BASE = "https://api.anthropic.com"
_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class AnthropicStream:
    """An open Anthropic SSE stream, yielding OpenAI chunk dicts as its events arrive."""

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        translator: ChunkTranslator,
        what: str,
        first_byte_timeout_s: float | None,
        *,
        legacy: bool = False,
    ) -> None:
        self._resp = resp
        self._translator = translator
        self._what = what
        self._first_byte_timeout_s = first_byte_timeout_s
        self._legacy = legacy
        # Known once message_stop arrives (partial and estimated if the stream breaks off).
        self.usage: Usage | None = None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._chunks()

    async def _next_event(self, events: AsyncIterator[tuple[str | None, bytes]], first: bool) -> tuple[str | None, bytes]:
        if first and self._first_byte_timeout_s:
            async with asyncio.timeout(self._first_byte_timeout_s):
                return await events.__anext__()
        return await events.__anext__()

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        translator = self._translator
        events = iter_sse(self._resp.content).__aiter__()
        first = True
        try:
            while True:
                try:
                    _, data = await self._next_event(events, first)
                except StopAsyncIteration:
                    break
                first = False
                try:
                    event = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise ProviderBadResponse(f"The upstream {self._what} sent a stream event that is not JSON.")
                if not isinstance(event, dict):
                    raise ProviderBadResponse(f"The upstream {self._what} sent an unexpected stream event.")
                for chunk in translator.feed(event):
                    if self._legacy:
                        legacy = text_completion_chunk(chunk)
                        if legacy is not None:
                            yield legacy
                    else:
                        yield chunk
                if translator.finished:
                    # Done at message_stop: do not wait on an upstream that holds the body open.
                    # The body's end has normally arrived with it, so the connection is still reused.
                    break
            if not translator.finished:
                raise translator.broken_off()
        except GatewayError:
            raise
        except _TRANSPORT_ERRORS as err:
            translator.broken_off()  # records the partial usage
            raise transport_error(err, self._what) from None
        finally:
            self.usage = translator.usage
            self._resp.release()

    async def aclose(self) -> None:
        # Closing (not releasing) drops a half-read connection instead of draining it.
        self._resp.close()


class AnthropicProvider:
    """Talks Anthropic's Messages API to one deployment, in OpenAI shapes."""

    name = "anthropic"

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        base = (deployment.api_base or DEFAULT_API_BASE).rstrip("/")
        # Accept an api_base given with or without the /v1 suffix.
        self._url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        self._session = session
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
        self._first_byte_timeout_s = deployment.first_byte_timeout_s
        # Names the upstream in error messages without revealing keys.
        self._what = f"'{deployment.model}' at {base}"

    async def _post(self, payload: dict[str, Any], headers: dict[str, str]) -> aiohttp.ClientResponse:
        data = orjson.dumps(payload)
        try:
            if self._first_byte_timeout_s:
                async with asyncio.timeout(self._first_byte_timeout_s):
                    resp = await self._session.post(self._url, data=data, headers=headers)
            else:
                resp = await self._session.post(self._url, data=data, headers=headers)
        except _TRANSPORT_ERRORS as err:
            raise transport_error(err, self._what) from None
        if resp.status >= 400:
            try:
                # Mapped by error.type; Anthropic's rate-limit headers are deliberately not passed on.
                raise await error_from_response(resp, self._what, status_for_type=ERROR_STATUS)
            except _TRANSPORT_ERRORS as err:
                raise transport_error(err, self._what) from None
            finally:
                resp.release()
        return resp

    async def chat(self, body: dict[str, Any]) -> ProviderResult:
        payload, ctx = to_anthropic(body, max_tokens_default=self._max_tokens_default)
        payload.pop("stream", None)
        resp = await self._post(payload, self._headers)
        try:
            raw = await resp.read()
        except _TRANSPORT_ERRORS as err:
            raise transport_error(err, self._what) from None
        finally:
            resp.release()
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProviderBadResponse(f"The upstream {self._what} answered with something that is not JSON.")
        completion, usage = chat_completion(message, ctx)
        return ProviderResult(body=completion, usage=usage)

    async def chat_stream(self, body: dict[str, Any]) -> AnthropicStream:
        return await self._open_stream(body, legacy=False)

    async def _open_stream(self, body: dict[str, Any], *, legacy: bool) -> AnthropicStream:
        payload, ctx = to_anthropic(body, max_tokens_default=self._max_tokens_default)
        payload["stream"] = True
        resp = await self._post(payload, self._stream_headers)
        if resp.content_type != "text/event-stream":
            resp.close()
            raise ProviderBadResponse(f"The upstream {self._what} did not answer with an event stream.")
        translator = ChunkTranslator(ctx, what=self._what)
        return AnthropicStream(resp, translator, self._what, self._first_byte_timeout_s, legacy=legacy)

    async def completions(self, body: dict[str, Any]) -> ProviderResult:
        result = await self.chat(completions_to_chat(body))
        return ProviderResult(body=text_completion(result.body), usage=result.usage)

    async def completions_stream(self, body: dict[str, Any]) -> AnthropicStream:
        return await self._open_stream(completions_to_chat(body), legacy=True)

    async def embeddings(self, body: dict[str, Any]) -> ProviderResult:
        raise InvalidRequest("Anthropic models have no embeddings; use an embedding model.", param="model")

    async def aclose(self) -> None:
        """The pool owns the session."""
