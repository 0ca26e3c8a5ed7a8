"""The OpenAI protocol: OpenAI itself and every compatible server (vLLM, Ollama, Groq, Azure's v1 API…).

Bodies go upstream as they came (unknown fields included); only ``model`` was
rewritten by the pipeline, and streams always ask for the usage chunk.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from lockgate.config import OpenAIDeployment
from lockgate.errors import ProviderBadResponse, ProviderTruncated, from_upstream_status
from lockgate.providers.base import ProviderResult, Usage
from lockgate.providers.http import JsonPoster, json_object, not_an_event_stream, upstream_name
from lockgate.providers.sse_stream import UpstreamStream

DEFAULT_API_BASE = "https://api.openai.com/v1"


class OpenAIStream(UpstreamStream[dict[str, Any]]):
    """An open OpenAI SSE stream, yielding chunk dicts as their events arrive."""

    _finished = False

    def on_event(self, name: str | None, data: bytes) -> tuple[dict[str, Any], ...]:
        if data == b"[DONE]":
            self.done = True
            return ()
        chunk = json_object(data, self._what)
        if "error" in chunk and not chunk.get("choices"):
            err = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            raise from_upstream_status(_status_of(err.get("status")), str(err.get("message") or "upstream stream error"))
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                self._finished = True
        return (chunk,)

    def on_end(self) -> None:
        if not self._finished and not self.done:
            raise ProviderTruncated(f"The upstream {self._what} ended its stream before finishing.")


class OpenAIProvider:
    """Talks the OpenAI HTTP API to one deployment over a pooled session."""

    name = "openai"

    def __init__(self, deployment: OpenAIDeployment, session: aiohttp.ClientSession) -> None:
        base = (deployment.api_base or DEFAULT_API_BASE).rstrip("/")
        self._urls = {
            "chat": base + "/chat/completions",
            "completions": base + "/completions",
            "embeddings": base + "/embeddings",
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if deployment.api_key is not None:
            headers["Authorization"] = f"Bearer {deployment.api_key.get_secret_value()}"
        headers.update(deployment.headers)
        self._headers = headers
        self._stream_usage = deployment.stream_usage
        self._http = JsonPoster(session, upstream_name(deployment.model, base), deployment)

    async def _complete(self, endpoint: str, body: dict[str, Any]) -> ProviderResult:
        resp = await self._http.post(self._urls[endpoint], body, self._headers)
        data = await self._http.read_json(resp)
        # A 2xx is trusted no further than its shape: an error object (some proxies answer 200) or
        # an answer without its list is not relayed as a success.
        listed = "data" if endpoint == "embeddings" else "choices"
        if not isinstance(data.get(listed), list):
            err = data.get("error")
            if err is not None:
                err = err if isinstance(err, dict) else {"message": str(err)}
                status = _status_of(err.get("status") or err.get("code"))
                raise from_upstream_status(status, str(err.get("message") or "upstream error"))
            raise ProviderBadResponse(f"The upstream {self._http.what} answered without `{listed}`.")
        return ProviderResult(body=data, usage=Usage.from_openai(data.get("usage")))

    async def _stream(self, endpoint: str, body: dict[str, Any]) -> OpenAIStream:
        if self._stream_usage:
            options = body.get("stream_options")
            body = {**body, "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True}}
        resp, timer = await self._http.post_stream(self._urls[endpoint], body, self._headers)
        if not_an_event_stream(resp):
            timer.cancel()
            resp.close()
            what, ctype = self._http.what, resp.content_type
            raise ProviderBadResponse(f"The upstream {what} answered a stream request with {ctype}, not an event stream.")
        return OpenAIStream(resp, self._http.what, timer)

    async def chat(self, body: dict[str, Any]) -> ProviderResult:
        return await self._complete("chat", body)

    async def chat_stream(self, body: dict[str, Any]) -> OpenAIStream:
        return await self._stream("chat", body)

    async def completions(self, body: dict[str, Any]) -> ProviderResult:
        return await self._complete("completions", body)

    async def completions_stream(self, body: dict[str, Any]) -> OpenAIStream:
        return await self._stream("completions", body)

    async def embeddings(self, body: dict[str, Any]) -> ProviderResult:
        return await self._complete("embeddings", body)

    async def aclose(self) -> None:
        """The pool owns the session."""


def _status_of(value: Any) -> int:
    """The HTTP status an upstream's error object names, when it names one; else 500 (its own failure)."""
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return value
    if isinstance(value, str) and value.isdigit() and 400 <= int(value) <= 599:
        return int(value)
    return 500
