"""Responses pass-through: a /v1/responses body sent to an OpenAI deployment's own /responses.

Chosen per deployment (`responses: native`). Only ``model`` is rewritten, both ways;
every other field (hosted tools, include, reasoning.encrypted_content, unknown ones)
reaches the upstream as the client sent it. What the gateway needs for records,
budgets and limits (usage, the response id) is read on the way past. A stream is
relayed event by event: an event that carries a ``response`` object (created,
in_progress, completed, incomplete, failed) is re-encoded with the public model,
every other event goes out as the exact bytes that came in.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from lockgate.config import OpenAIDeployment
from lockgate.errors import GatewayError, ProviderBadResponse, from_upstream_status
from lockgate.providers.base import ProviderResult, Usage, tokens_for_chars
from lockgate.providers.http import TRANSPORT_ERRORS, StreamTimer, error_from_response, json_object, transport_error
from lockgate.providers.openai import DEFAULT_API_BASE, OpenAIProvider
from lockgate.providers.sse_stream import UpstreamStream

TERMINAL = ("response.completed", "response.incomplete", "response.failed")
# The HTTP status an error code in a stream stands for (OpenAI names mid-stream errors by code).
_STATUS_FOR_CODE = {"rate_limit_exceeded": 429, "server_error": 500, "invalid_prompt": 400, "vector_store_timeout": 504}


def usage_of_response(usage: Any) -> Usage | None:
    """A Responses `usage` object in the gateway's terms (input_tokens already include cached ones)."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details") or {}
    out_details = usage.get("output_tokens_details") or {}
    return Usage(
        prompt_tokens=int(usage.get("input_tokens") or 0),
        completion_tokens=int(usage.get("output_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        cache_creation_tokens=int(details.get("cache_write_tokens") or 0),
        reasoning_tokens=int(out_details.get("reasoning_tokens") or 0),
    )


def error_from_event(error: dict[str, Any], what: str) -> GatewayError:
    """An `error` event, or a failed response's `error`, as the gateway's error (status from its code)."""
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = str(error.get("message") or f"The upstream {what} failed the response.")
    return from_upstream_status(_STATUS_FOR_CODE.get(code or "", 500), message, code=code)


class NativeEvent(dict):  # type: ignore[type-arg]
    """One upstream event: its parsed data, and the exact bytes to relay (`raw`)."""

    raw: bytes = b""


class NativeResponsesStream(UpstreamStream[NativeEvent]):
    """An open Responses SSE stream, yielding its events (NativeEvent) as they arrive.

    Read to the body's end (which follows the terminal event at once), so the connection
    goes back to the pool.
    """

    def __init__(
        self, resp: aiohttp.ClientResponse, what: str, timer: StreamTimer, public_model: str, input_estimate: int
    ) -> None:
        super().__init__(resp, what, timer)
        self._public_model = public_model
        self._input_estimate = input_estimate
        self._delta_chars = 0
        self._started = False
        self._terminal: str | None = None
        self._failure: GatewayError | None = None

    def on_event(self, name: str | None, data: bytes) -> tuple[NativeEvent]:
        event = json_object(data, self._what)
        etype = event.get("type")
        if etype == "error":
            raise error_from_event(event, self._what)
        self._started = True
        response = event.get("response")
        if isinstance(response, dict):
            if "model" in response:
                response["model"] = self._public_model
                data = orjson.dumps(event)
            if etype in TERMINAL:
                self._terminal = str(etype)
                self.usage = usage_of_response(response.get("usage")) or self._estimate()
                if etype == "response.failed":
                    error = response.get("error")
                    self._failure = error_from_event(error if isinstance(error, dict) else {}, self._what)
        elif isinstance(event.get("delta"), str):
            self._delta_chars += len(event["delta"])
        out = NativeEvent(event)
        out.raw = b"event: " + (name or str(etype)).encode() + b"\ndata: " + data + b"\n\n"
        return (out,)

    def on_end(self) -> None:
        if self._terminal is None:
            raise ProviderBadResponse(f"The upstream {self._what} ended its stream before finishing.")
        if self._failure is not None:
            # Relayed as the upstream sent it; raised so the request is recorded as failed.
            raise self._failure

    def _estimate(self) -> Usage:
        # Cut short (upstream break, client gone): what was relayed so far still cost something.
        return Usage(prompt_tokens=self._input_estimate, completion_tokens=tokens_for_chars(self._delta_chars), estimated=True)

    def on_broken(self) -> None:
        if self.usage is None and self._started:
            self.usage = self._estimate()

    async def aclose(self) -> None:
        self.on_broken()  # a client gone mid-stream: the upstream is cut off, the tokens relayed still count
        await super().aclose()


class OpenAIResponsesProvider(OpenAIProvider):
    """An OpenAI deployment that also serves /v1/responses natively (config: `responses: native`)."""

    def __init__(self, deployment: OpenAIDeployment, session: aiohttp.ClientSession) -> None:
        super().__init__(deployment, session)
        self._responses_url = (deployment.api_base or DEFAULT_API_BASE).rstrip("/") + "/responses"
        self._sse_headers = {**self._headers, "Accept": "text/event-stream"}
        self._session = session
        self._delete_timeout = aiohttp.ClientTimeout(total=deployment.timeout_s, sock_connect=deployment.connect_timeout_s)

    async def responses(self, body: dict[str, Any], public_model: str) -> ProviderResult:
        """A Responses body as the client sent it (model already the upstream's); the Response back as is."""
        payload = {**body, "stream": False} if "stream" in body else body
        resp = await self._http.post(self._responses_url, payload, self._headers)
        response = await self._http.read_json(resp)
        if response.get("object") != "response":
            raise ProviderBadResponse(f"The upstream {self._http.what} answered with something that is not a Response.")
        response["model"] = public_model
        return ProviderResult(body=response, usage=usage_of_response(response.get("usage")))

    async def responses_stream(
        self, body: dict[str, Any], public_model: str, *, input_estimate: int = 0
    ) -> NativeResponsesStream:
        resp, timer = await self._http.post_stream(self._responses_url, {**body, "stream": True}, self._sse_headers)
        if resp.content_type != "text/event-stream":
            timer.cancel()
            resp.close()
            raise ProviderBadResponse(f"The upstream {self._http.what} did not answer with an event stream.")
        return NativeResponsesStream(resp, self._http.what, timer, public_model, input_estimate)

    async def delete_response(self, response_id: str) -> None:
        """Delete the upstream's copy of a stored response (one it no longer has is fine)."""
        url = f"{self._responses_url}/{quote(response_id, safe='')}"
        try:
            async with self._session.delete(url, headers=self._headers, timeout=self._delete_timeout) as resp:
                if resp.status >= 400 and resp.status != 404:
                    raise await error_from_response(resp, self._http.what)
        except TRANSPORT_ERRORS as err:
            raise transport_error(err, self._http.what) from None
