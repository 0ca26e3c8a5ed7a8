"""Response shapes for the OpenAPI spec only: what the gateway answers, as JSON Schema.

The gateway never builds these objects (it relays providers' JSON and its own
dicts); they exist so the spec says what a client receives. Every object allows
more fields than it lists: an upstream may add fields, and they are relayed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- the one error object -----------------------------------------------------------------


class ErrorBody(_Shape):
    message: str = Field(description="What went wrong, for a person; never a secret or a stack trace")
    type: str = Field(description="OpenAI's error type: invalid_request_error, authentication_error, …")
    param: str | None = Field(description="The request parameter at fault, when there is one")
    code: str | None = Field(description="A stable machine-readable code (see the table in the description)")


class Error(BaseModel):
    """Every error Lockgate answers in the OpenAI dialect (all routes but /v1/messages)."""

    error: ErrorBody


class AnthropicErrorBody(_Shape):
    type: str = Field(description="Anthropic's error type: invalid_request_error, authentication_error, …")
    message: str


class AnthropicError(BaseModel):
    """The Messages dialect's error (/v1/messages only): what the Anthropic SDK and Claude Code parse."""

    type: Literal["error"]
    error: AnthropicErrorBody
    request_id: str | None = None


# --- OpenAI inference ---------------------------------------------------------------------


class CompletionUsage(_Shape):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatMessageOut(_Shape):
    role: Literal["assistant"]
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None


class ChatChoice(_Shape):
    index: int
    message: ChatMessageOut
    finish_reason: str | None


class ChatCompletion(_Shape):
    """`stream` false or absent."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str = Field(description="The public model name the client asked for")
    choices: list[ChatChoice]
    usage: CompletionUsage | None = None


class ChunkChoice(_Shape):
    index: int
    delta: dict[str, Any] = Field(description="role, content, tool_calls: the part of the message this chunk adds")
    finish_reason: str | None = None


class ChatCompletionChunk(_Shape):
    """One `data:` event of a chat stream. The last one, when `stream_options.include_usage` is true
    (Lockgate always asks its upstream for it, so it can account), has empty `choices` and the `usage`."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None


class TextChoice(_Shape):
    index: int
    text: str
    finish_reason: str | None = None


class TextCompletion(_Shape):
    """A legacy completion; its stream sends objects of this same shape, one per `data:` event."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: CompletionUsage | None = None


class Embedding(_Shape):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="Floats, or little-endian float32 in base64 when encoding_format is base64")


class EmbeddingUsage(_Shape):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(_Shape):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class Model(_Shape):
    id: str = Field(description="The public model name to send as `model`")
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Shape):
    """The models this caller may use. With an `anthropic-version` header (Claude Code's model
    discovery), the list is in Anthropic's shape instead: `{data: [{type, id, display_name, created_at}], has_more, first_id, last_id}`."""

    object: Literal["list"]
    data: list[Model]


# --- Anthropic Messages -------------------------------------------------------------------


class MessageUsage(_Shape):
    input_tokens: int
    output_tokens: int


class AnthropicMessage(_Shape):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]] = Field(description="Content blocks: text, tool_use, thinking…")
    stop_reason: str | None
    usage: MessageUsage


class TokenCount(BaseModel):
    input_tokens: int


# --- OpenAI Responses ---------------------------------------------------------------------


class ResponseObject(_Shape):
    id: str
    object: Literal["response"]
    created_at: int | float
    status: str = Field(description="completed, incomplete, failed, in_progress")
    model: str
    output: list[dict[str, Any]] = Field(description="Output items: message, function_call, reasoning…")
    usage: dict[str, Any] | None = None


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response.deleted"]
    deleted: bool


class InputItemList(BaseModel):
    object: Literal["list"]
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


# --- usage, health ------------------------------------------------------------------------


class UsageRow(_Shape):
    requests: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None


class UsageReport(BaseModel):
    object: Literal["list"]
    group_by: str
    start: str = Field(description="First day (UTC), inclusive")
    end: str = Field(description="Last day (UTC), inclusive")
    data: list[UsageRow] = Field(description="One row per group: its key (key_id, model, team or day) and its totals")


class Live(BaseModel):
    status: Literal["ok"]


class Readiness(_Shape):
    """Each part's state; 503 with the same shape when the gateway cannot serve (or is `starting`)."""

    status: str = Field(description="ready, degraded, not_ready or starting")


# --- request bodies validated by their ingress (documented here; the ingress is the check) ----------


class AnthropicTextBlock(_Shape):
    type: Literal["text"]
    text: str


# --- Anthropic content blocks as the gateway reads them (an Anthropic deployment gets them as sent) --------


class _Base64Image(_Shape):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class _UrlSource(_Shape):
    type: Literal["url"]
    url: str


class AnthropicImageBlock(_Shape):
    type: Literal["image"]
    source: _Base64Image | _UrlSource


class _Base64Pdf(_Shape):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: str


class _TextSource(_Shape):
    type: Literal["text"]
    data: str


class AnthropicDocumentBlock(_Shape):
    type: Literal["document"]
    source: _Base64Pdf | _TextSource


class AnthropicToolResultBlock(_Shape):
    """The answer to a tool_use block of the turn before; each tool_use id is answered once."""

    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[AnthropicTextBlock | AnthropicImageBlock | AnthropicDocumentBlock] | None = None


class AnthropicToolUseBlock(_Shape):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class AnthropicThinkingBlock(_Shape):
    """Signed by the provider that wrote it: dropped for other deployments."""

    type: Literal["thinking", "redacted_thinking"]


class AnthropicUserTurn(_Shape):
    role: Literal["user"]
    content: str | list[AnthropicTextBlock | AnthropicImageBlock | AnthropicDocumentBlock | AnthropicToolResultBlock]


class AnthropicAssistantTurn(_Shape):
    role: Literal["assistant"]
    content: str | list[AnthropicTextBlock | AnthropicToolUseBlock | AnthropicThinkingBlock]


class AnthropicTool(_Shape):
    """A client tool. Anthropic's server tools (web search, code execution…) are carried to Anthropic
    deployments only; for the others they are a 400, so the spec states client tools."""

    name: str
    input_schema: dict[str, Any] = Field(description="The JSON Schema of the tool's input")
    type: Literal["custom"] | None = None


class ResponsesTool(_Shape):
    """A function tool; hosted tools (web_search, file_search…) cannot run here and are a 400."""

    type: Literal["function"]
    name: str = Field(min_length=1)


class MessagesRequest(_Shape):
    """Anthropic's Messages request. Anthropic-only fields (cache_control, top_k, thinking…) are carried to an
    Anthropic deployment as sent; for other deployments those without an OpenAI meaning are dropped, and
    server tools are refused with a 400."""

    model: str = Field(min_length=1, description="The public model name")
    max_tokens: int = Field(ge=1)
    messages: list[AnthropicUserTurn | AnthropicAssistantTurn] = Field(
        min_length=1, description="Turns of role user/assistant; content a string or blocks"
    )
    system: str | list[AnthropicTextBlock] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    tools: list[AnthropicTool] | None = None
    tool_choice: dict[str, Any] | None = None
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = None


class CountTokensRequest(_Shape):
    model: str = Field(min_length=1)
    messages: list[AnthropicUserTurn | AnthropicAssistantTurn] = Field(min_length=1)
    system: str | list[AnthropicTextBlock] | None = None
    tools: list[AnthropicTool] | None = None


class ResponsesRequest(_Shape):
    """OpenAI's Responses request."""

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(description="A string, or input items (messages, function_call_output…)")
    instructions: str | None = None
    previous_response_id: str | None = Field(
        default=None, min_length=1, description="Continue from a stored response of this key (its `resp_…` id)"
    )
    store: bool | None = Field(default=None, description="Keep the response (default true)")
    stream: bool | None = None
    tools: list[ResponsesTool] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)


class MessagesStreamEvent(_Shape):
    """One event of a Messages stream: message_start (with the `message`), content_block_start/delta/stop,
    message_delta (with the `usage`), message_stop, ping, or error."""

    type: str


class ResponsesStreamEvent(_Shape):
    """One event of a Responses stream: response.created, response.output_text.delta, … response.completed
    (whose `response` is the whole response with its usage)."""

    type: str
    sequence_number: int | None = None
