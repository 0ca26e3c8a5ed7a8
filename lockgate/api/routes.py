"""The inference POSTs, declared once: api/front.py serves them from this table, and the same
entries are registered with FastAPI so the spec (and 405 for a wrong method) comes from them.

Front looks a path up in `fast_paths()` (one dict lookup, built at start-up) and calls the
entry's `serve` straight away, ahead of the framework's middleware and router (a quarter of
the gateway's CPU per request, measured with bench/). The FastAPI route of an entry calls
the same `serve`, so the app behaves the same without Front.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from lockgate.api import messages, openai, responses
from lockgate.api import spec_examples as ex
from lockgate.api import spec_models as sm
from lockgate.api.openapi import AUTH_ERRORS, CALLER, RETRY_AFTER, SERVED_HEADERS, errors, json_body, sse
from lockgate.schemas import ChatRequest, CompletionRequest, EmbeddingRequest

Serve = Callable[[Request, str], Awaitable[Response]]

_INFERENCE_ERRORS = (400, 403, 404, 413, *AUTH_ERRORS, 500, 502, 504)
_PASS_THROUGH = (
    "Fields the gateway does not list are passed to the upstream untouched (`additionalProperties` is true); "
    "`model` is the public name, mapped to a deployment by the router."
)
_OPENAI_FRAMING = (
    "Framing: `data: <json>\\n\\n` per chunk, then `data: [DONE]\\n\\n`. The last chunk before `[DONE]` has empty "
    "`choices` and the `usage` when `stream_options.include_usage` is true. An error after the first byte is one "
    '`data: {"error": {...}}` event.'
)
_ANTHROPIC_FRAMING = (
    "Framing: `event: <type>\\ndata: <json>\\n\\n`, Anthropic's sequence: message_start, content_block_start/delta/stop, "
    "message_delta (with the usage), message_stop; `ping` events keep an idle stream open; an error is an `error` event."
)
_RESPONSES_FRAMING = (
    "Framing: `event: <type>\\ndata: <json>\\n\\n`, OpenAI's Responses events (response.created … response.completed, "
    "whose `response` has the usage), each with its `sequence_number`."
)


@dataclass(frozen=True)
class FastRoute:
    path: str
    endpoint: str  # the pipeline's name for it: chat, completions, embeddings, messages…
    serve: Serve
    operation_id: str
    summary: str
    description: str
    tags: list[str]
    body: type[BaseModel]
    body_example: Any
    ok: dict[str, Any]  # the 200's content, by media type
    ok_model: type[BaseModel]
    error_statuses: tuple[int, ...] = _INFERENCE_ERRORS
    anthropic: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def responses(self) -> dict[int | str, dict[str, Any]]:
        headers = dict(SERVED_HEADERS)
        if self.anthropic:
            headers["request-id"] = {"description": "The request id again, under Anthropic's name", "schema": {"type": "string"}}
        ok = {
            "description": "The answer (JSON, or SSE when `stream` is true)",
            "model": self.ok_model,
            "content": self.ok,
            "headers": headers,
        }
        out = errors(*self.error_statuses, anthropic=self.anthropic)
        for status in (429, 503, 529):
            if status in out:
                out[status]["headers"] = {**RETRY_AFTER, **(headers if status == 429 else {})}
        return {200: ok, **out}


def _json(example: Any) -> dict[str, Any]:
    return {"application/json": {"example": example}}


FAST_ROUTES: tuple[FastRoute, ...] = (
    FastRoute(
        "/v1/chat/completions",
        "chat",
        openai.serve,
        "createChatCompletion",
        "Create a chat completion",
        "OpenAI's chat completions, on any configured deployment (OpenAI, Anthropic, mock). " + _PASS_THROUGH,
        ["OpenAI-compatible"],
        ChatRequest,
        ex.CHAT_REQUEST,
        {**_json(ex.CHAT_RESPONSE), "text/event-stream": sse("ChatCompletionChunk", _OPENAI_FRAMING, ex.CHAT_STREAM, done=True)},
        sm.ChatCompletion,
    ),
    FastRoute(
        "/v1/completions",
        "completions",
        openai.serve,
        "createCompletion",
        "Create a (legacy) completion",
        "OpenAI's legacy text completions. " + _PASS_THROUGH,
        ["OpenAI-compatible"],
        CompletionRequest,
        ex.COMPLETION_REQUEST,
        {
            **_json(ex.COMPLETION_RESPONSE),
            "text/event-stream": sse("TextCompletion", _OPENAI_FRAMING, ex.COMPLETION_STREAM, done=True),
        },
        sm.TextCompletion,
    ),
    FastRoute(
        "/v1/embeddings",
        "embeddings",
        openai.serve,
        "createEmbedding",
        "Create embeddings",
        "OpenAI's embeddings. " + _PASS_THROUGH,
        ["OpenAI-compatible"],
        EmbeddingRequest,
        ex.EMBEDDING_REQUEST,
        _json(ex.EMBEDDING_RESPONSE),
        sm.EmbeddingList,
    ),
    FastRoute(
        "/v1/responses",
        "responses",
        responses.serve,
        "createResponse",
        "Create a response (OpenAI Responses API)",
        "OpenAI's Responses API on any deployment. With `store` (default true) the response is kept for "
        "`previous_response_id` and GET /v1/responses/{response_id}. " + _PASS_THROUGH,
        ["OpenAI-compatible"],
        sm.ResponsesRequest,
        ex.RESPONSES_REQUEST,
        {**_json(ex.RESPONSE_OBJECT), "text/event-stream": sse("ResponsesStreamEvent", _RESPONSES_FRAMING, ex.RESPONSES_STREAM)},
        sm.ResponseObject,
    ),
    FastRoute(
        "/v1/messages",
        "messages",
        messages.serve,
        "createMessage",
        "Create a message (Anthropic Messages API)",
        "Anthropic's Messages API on any deployment (translated for OpenAI and mock ones, passed through to "
        "Anthropic ones). `?beta=true` is the same endpoint. Errors are in Anthropic's shape. " + _PASS_THROUGH,
        ["Anthropic-compatible"],
        sm.MessagesRequest,
        ex.MESSAGES_REQUEST,
        {**_json(ex.MESSAGES_RESPONSE), "text/event-stream": sse("MessagesStreamEvent", _ANTHROPIC_FRAMING, ex.MESSAGES_STREAM)},
        sm.AnthropicMessage,
        (*_INFERENCE_ERRORS, 529),
        anthropic=True,
    ),
    FastRoute(
        "/v1/messages/count_tokens",
        "count_tokens",
        messages.serve,
        "countMessageTokens",
        "Count a message's input tokens",
        "Anthropic's own count for an Anthropic deployment, else a local estimate (about four characters a token).",
        ["Anthropic-compatible"],
        sm.CountTokensRequest,
        ex.COUNT_TOKENS_REQUEST,
        _json({"input_tokens": 14}),
        sm.TokenCount,
        (400, 403, 404, 413, *AUTH_ERRORS, 500, 502, 504, 529),
        anthropic=True,
    ),
)

# Named by the spec but declared by no route: request bodies read by their handlers, stream events.
SPEC_MODELS: list[type[BaseModel]] = [
    *{r.body for r in FAST_ROUTES},
    sm.ChatCompletionChunk,
    sm.MessagesStreamEvent,
    sm.ResponsesStreamEvent,
    sm.Error,
    sm.AnthropicError,
]


def fast_paths() -> dict[str, tuple[Serve, str]]:
    """What Front serves itself: POST path -> (serve, endpoint)."""
    return {r.path: (r.serve, r.endpoint) for r in FAST_ROUTES}


def _handler(route: FastRoute) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return await route.serve(request, route.endpoint)

    return handle


def register(app: FastAPI) -> None:
    for r in FAST_ROUTES:
        app.add_api_route(
            r.path,
            _handler(r),
            methods=["POST"],
            operation_id=r.operation_id,
            summary=r.summary,
            description=r.description,
            tags=list(r.tags),
            responses=r.responses(),
            openapi_extra={**json_body(r.body, r.body_example), "security": CALLER, **r.extra},
            response_class=Response,
        )
