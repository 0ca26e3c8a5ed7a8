"""OpenAI request shapes the gateway reads, validated strictly where it matters.

The models check what the gateway relies on and what a client most often gets
wrong; every other field is allowed and passed through untouched, so new
OpenAI parameters keep working. The validated object is thrown away: the
client's own dict goes upstream.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from lockgate.errors import InvalidRequest

# A token id as tokenizers number them: 0 .. 2^31-1 (what the spec states, so what is checked).
TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]
# Fields the spec types as integer: JSON Schema counts 5.0 as one, so the body carries it on as 5.
_WHOLE_FIELDS = ("max_tokens", "max_completion_tokens", "n", "dimensions")
_TOKEN_FIELDS = ("prompt", "input")


class _Open(BaseModel):
    # Strict: "yes" is not a boolean and "1" is not a number, as OpenAI's own validation says.
    model_config = ConfigDict(extra="allow", strict=True)


class FunctionCall(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: str = "function"
    function: FunctionCall


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Open):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: str = "function"
    function: FunctionDef | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class _Sampling(_Open):
    model: str = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    n: int | None = Field(default=None, ge=1, le=128)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    user: str | None = None


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[TokenId] | list[list[TokenId]]


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1)
    input: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[list[list[TokenId]], Field(min_length=1)]
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1, le=8192)  # no embedding model has more; the mock says so too


_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "chat": TypeAdapter(ChatRequest),
    "completions": TypeAdapter(CompletionRequest),
    "embeddings": TypeAdapter(EmbeddingRequest),
}


def _param(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        # pydantic names union members (e.g. "str", "list[...]"); they are not fields.
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or part in ("str", "int", "float", "bool", "dict", "list", "function-after"):
            continue
        else:
            out += f".{part}" if out else part
    return out


def decode_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or InvalidRequest saying what is wrong with it (every dialect)."""
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidRequest(f"The request body is not valid JSON: {err.msg} (at position {err.pos}).") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _whole_numbers(body: dict[str, Any]) -> None:
    """Integral floats (5.0) in integer fields and token arrays as ints, in place: the spec's integer."""
    for key in _WHOLE_FIELDS:
        if key in body:
            body[key] = _whole(body[key])
    for key in _TOKEN_FIELDS:
        value = body.get(key)
        if isinstance(value, list):
            body[key] = [[_whole(v) for v in item] if isinstance(item, list) else _whole(item) for item in value]


def parse_body(endpoint: str, raw: bytes) -> dict[str, Any]:
    """Decode and validate a request body; InvalidRequest names the first bad param."""
    body = decode_object(raw)
    _whole_numbers(body)
    try:
        _ADAPTERS[endpoint].validate_python(body)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        param = _param(tuple(first["loc"])) or None
        if first["type"] == "missing":
            message = f"Missing required parameter: '{param}'."
        else:
            shown = orjson.dumps(first.get("input"))[:100].decode(errors="replace")
            message = f"Invalid value for '{param}': {first['msg']} (got {shown})."
        raise InvalidRequest(
            message, param=param, code="missing_required_parameter" if first["type"] == "missing" else "invalid_value"
        ) from None
    return body
