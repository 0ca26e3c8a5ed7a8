"""The seam between the pipeline and a client dialect other than OpenAI chat.

The pipeline speaks canonical chat. An ingress, made per request by the web layer and
set on ``RequestContext.ingress``, is asked at these points and nowhere else:

    parse(raw)            the client's body -> the canonical chat body (InvalidRequest on bad input)
    native_call(...)      per attempt: the upstream call when the deployment speaks the client's
                          dialect (pass-through), else None and the pipeline translates
    translated_body(...)  per translated attempt: the chat body fitted to the deployment (limits)
    render(ctx, body)     a complete answer -> the bytes of the client's JSON
    frames(ctx)           a stream's framing: chunk(chunk) / done() / error(err) -> bytes
    error(err)            a GatewayError -> (status, body) in the client's error shape
    record_extra          fields the request's record carries besides the usual ones

No web framework here.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from lockgate.errors import GatewayError


class StreamFraming(Protocol):
    def chunk(self, chunk: dict[str, Any]) -> bytes: ...

    def done(self) -> bytes: ...

    def error(self, err: GatewayError) -> bytes: ...


class Ingress(Protocol):
    endpoint: str
    record_extra: dict[str, Any]

    def parse(self, raw: bytes) -> dict[str, Any]: ...

    def native_call(self, upstream: Any, public_model: str, *, stream: bool) -> Awaitable[Any] | None: ...

    def translated_body(self, upstream: Any, chat_body: dict[str, Any]) -> dict[str, Any]: ...

    def render(self, ctx: Any, chat_body: dict[str, Any]) -> bytes: ...

    def frames(self, ctx: Any) -> StreamFraming: ...

    def error(self, err: GatewayError) -> tuple[int, bytes]: ...


def clamp_output_tokens(upstream: Any, chat_body: dict[str, Any]) -> dict[str, Any]:
    """Agents ask for 32k-64k output tokens; a deployment whose model stops earlier would refuse that,
    so a translated request is clamped to the deployment's `max_output_tokens` (when configured)."""
    limit = upstream.config.max_output_tokens
    asked = chat_body.get("max_completion_tokens")
    if limit is None or not isinstance(asked, int) or asked <= limit:
        return chat_body
    return {**chat_body, "max_completion_tokens": limit}
