"""OpenAI chat request -> Anthropic Messages request. Pure functions, no I/O.

Every OpenAI parameter is either translated, dropped because OpenAI documents
it as a hint (or it only concerns OpenAI's own storage), or refused with a 400
naming it: a silent drop of something the client relies on would be a lie.
docs/anthropic.md lists which is which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lockgate.errors import InvalidRequest
from lockgate.providers.anthropic.messages import convert_messages, with_cache_control

# The forced tool that carries `response_format` output; its input becomes message content.
JSON_TOOL_NAME = "lockgate_json_response"

# reasoning_effort -> thinking budget_tokens (Anthropic's minimum budget is 1024).
THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
MIN_THINKING_BUDGET = 1024

# Parameters translated below.
_TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "temperature",
        "top_p",
        "user",
        "safety_identifier",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "stream",
        "stream_options",
    }
)
# Anthropic-native parameters some OpenAI clients send through `extra_body`; passed as they are.
_PASSTHROUGH = frozenset({"top_k", "thinking"})
# OpenAI calls these hints or OpenAI-side features with no effect on the answer: dropped.
_DROPPED = frozenset(
    {"seed", "service_tier", "store", "metadata", "prediction", "prompt_cache_key", "prompt_cache_retention", "verbosity"}
)
# Accepted only at their no-op value; anything else is a 400 naming the parameter.
_NOOP_VALUES: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "logit_bias": ({},),
    "modalities": (["text"],),
}


@dataclass(frozen=True, slots=True)
class TranslationContext:
    """What the response translation needs to know about how the request was translated."""

    model: str
    # Name of the forced tool whose input is the answer (response_format), if any.
    json_tool: str | None = None
    # The schema was not an object and was wrapped as {"value": ...}: unwrap on the way back.
    json_wrapped: bool = False


def _unsupported(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"Anthropic models do not support `{param}`: {why}", param=param)


def check_params(body: dict[str, Any]) -> None:
    """Refuse parameters Anthropic cannot honour, naming them."""
    for key, value in body.items():
        if value is None or key in _TRANSLATED or key in _PASSTHROUGH or key in _DROPPED:
            continue
        if key in _NOOP_VALUES:
            if value not in _NOOP_VALUES[key]:
                raise _unsupported(key, f"only {_NOOP_VALUES[key][0]!r} is accepted.")
            continue
        if key in ("functions", "function_call"):
            raise _unsupported(key, "use `tools` and `tool_choice` instead.")
        if key in ("audio", "web_search_options"):
            raise _unsupported(key, "this feature has no Anthropic equivalent.")
        raise InvalidRequest(f"Unrecognized request argument supplied: {key}", param=key)


# --- tools ----------------------------------------------------------------------------------------


def convert_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be an array.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(f"tools[{i}]: only function tools with a name are supported.", param=f"tools[{i}]")
        if fn["name"] == JSON_TOOL_NAME:
            raise InvalidRequest(f"tools[{i}]: the name {JSON_TOOL_NAME} is reserved.", param=f"tools[{i}]")
        schema = fn.get("parameters")
        converted: dict[str, Any] = {
            "name": fn["name"],
            # Anthropic requires an input_schema; OpenAI's default is "no parameters".
            "input_schema": schema if isinstance(schema, dict) else {"type": "object", "properties": {}},
        }
        if isinstance(fn.get("description"), str):
            converted["description"] = fn["description"]
        # `strict` is dropped: the schema still guides the model, but is not enforced (see docs).
        with_cache_control(converted, tool)
        out.append(converted)
    return out


def convert_tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    fn = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return {"type": "tool", "name": fn["name"]}
    raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or a named function.", param="tool_choice")


def json_tool(response_format: Any) -> tuple[dict[str, Any] | None, bool]:
    """The forced tool that carries a JSON answer, and whether its schema was wrapped."""
    rtype = response_format.get("type") if isinstance(response_format, dict) else None
    if rtype == "text":
        return None, False
    if rtype == "json_object":
        return {
            "name": JSON_TOOL_NAME,
            "description": "Respond with your complete answer as a JSON object.",
            "input_schema": {"type": "object"},
        }, False
    if rtype == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema.schema must be an object.", param="response_format")
        description = "Respond with your complete answer, following this schema."
        if isinstance(spec.get("description"), str):
            description += " " + spec["description"]
        wrapped = schema.get("type") != "object"
        if wrapped:
            # A tool's input is always an object: wrap other schemas and unwrap the answer.
            schema = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
        return {"name": JSON_TOOL_NAME, "description": description, "input_schema": schema}, wrapped
    raise InvalidRequest("response_format.type must be text, json_object or json_schema.", param="response_format")


# --- the request -------------------------------------------------------------------------------------


def _max_tokens(body: dict[str, Any], default: int) -> tuple[int, bool]:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequest(f"{key} must be a positive integer.", param=key)
            return value, True
    return default, False


def _thinking(effort: Any, max_tokens: int, client_set: bool) -> tuple[dict[str, Any] | None, int]:
    """A thinking config for reasoning_effort, and max_tokens (thinking counts towards it)."""
    if effort == "none":
        return None, max_tokens
    if effort not in THINKING_BUDGETS:
        raise InvalidRequest(f"reasoning_effort must be one of none, {', '.join(THINKING_BUDGETS)}.", param="reasoning_effort")
    budget = THINKING_BUDGETS[effort]
    if not client_set:
        # The deployment default is for the answer; give thinking its room on top.
        return {"type": "enabled", "budget_tokens": budget}, budget + max_tokens
    if max_tokens <= MIN_THINKING_BUDGET:
        raise InvalidRequest(
            f"reasoning_effort needs max_tokens above {MIN_THINKING_BUDGET} on Anthropic models.",
            param="max_tokens",
        )
    # Like OpenAI's max_completion_tokens, Anthropic's max_tokens includes the reasoning.
    return {"type": "enabled", "budget_tokens": min(budget, max_tokens - 1)}, max_tokens


def to_anthropic(body: dict[str, Any], *, max_tokens_default: int) -> tuple[dict[str, Any], TranslationContext]:
    """Translate an OpenAI chat request into an Anthropic Messages request."""
    check_params(body)
    system, messages = convert_messages(body.get("messages"))
    payload: dict[str, Any] = {"model": body["model"]}
    if system:
        payload["system"] = system
    payload["messages"] = messages
    max_tokens, client_set = _max_tokens(body, max_tokens_default)

    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest("stop must be a string or an array of strings.", param="stop")
        if stops:
            payload["stop_sequences"] = stops
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1:
            # OpenAI allows up to 2; rescaling would change the meaning, so say so.
            raise InvalidRequest("Anthropic models accept a temperature from 0 to 1.", param="temperature")
        payload["temperature"] = temperature
    if body.get("top_p") is not None:
        payload["top_p"] = body["top_p"]
    for key in _PASSTHROUGH:
        if body.get(key) is not None:
            payload[key] = body[key]
    user = body.get("user") if body.get("user") is not None else body.get("safety_identifier")
    if isinstance(user, str) and user:
        payload["metadata"] = {"user_id": user}

    tools = convert_tools(body["tools"]) if body.get("tools") else []
    tool_choice = convert_tool_choice(body["tool_choice"]) if body.get("tool_choice") is not None else None
    if tool_choice is not None and not tools:
        if tool_choice["type"] in ("any", "tool"):
            raise InvalidRequest("tool_choice needs tools.", param="tool_choice")
        tool_choice = None  # auto / none without tools mean nothing
    if tool_choice and tool_choice["type"] == "tool" and tool_choice["name"] not in {t["name"] for t in tools}:
        raise InvalidRequest(f"tool_choice names an unknown function {tool_choice['name']!r}.", param="tool_choice")

    ctx = TranslationContext(model=body["model"])
    forced, wrapped = json_tool(body["response_format"]) if body.get("response_format") is not None else (None, False)
    if forced is not None and (tool_choice is None or tool_choice["type"] in ("auto", "none")):
        # The answer must be JSON: force our tool, or (with client tools on auto) let the
        # model pick between calling a client tool and answering through ours.
        # Client tools stay defined either way: Anthropic wants the tools of tool_use history.
        if not tools or (tool_choice is not None and tool_choice["type"] == "none"):
            tool_choice = {"type": "tool", "name": JSON_TOOL_NAME}
        else:
            tool_choice = {"type": "any"}
        tools = tools + [forced]
        ctx = TranslationContext(model=body["model"], json_tool=JSON_TOOL_NAME, json_wrapped=wrapped)
    # With tool_choice required or a named function the answer is a tool call: response_format has no say.

    if body.get("parallel_tool_calls") is False and tools:
        if tool_choice is None:
            tool_choice = {"type": "auto"}
        if tool_choice["type"] != "none":
            tool_choice["disable_parallel_tool_use"] = True
    if tools:
        payload["tools"] = tools
    if tool_choice is not None:
        payload["tool_choice"] = tool_choice

    effort = body.get("reasoning_effort")
    if effort is not None and "thinking" not in payload:
        thinking, max_tokens = _thinking(effort, max_tokens, client_set)
        if thinking is not None:
            if ctx.json_tool or (tool_choice and tool_choice["type"] in ("any", "tool")):
                # Anthropic refuses forced tool use with thinking.
                param = "response_format" if ctx.json_tool else "tool_choice"
                raise InvalidRequest(f"reasoning_effort cannot be combined with {param} on Anthropic models.", param=param)
            if temperature is not None and temperature != 1:
                raise InvalidRequest(
                    "reasoning_effort cannot be combined with a temperature other than 1 on Anthropic models.",
                    param="temperature",
                )
            if not _continues_tool_turn(messages):
                payload["thinking"] = thinking
            # else: thinking is left off. Anthropic requires the signed thinking block of the
            # assistant turn being continued, which the OpenAI format cannot carry back.
    payload["max_tokens"] = max_tokens
    if body.get("stream"):
        payload["stream"] = True
    return payload, ctx


def _continues_tool_turn(messages: list[dict[str, Any]]) -> bool:
    last = messages[-1] if messages else None
    return bool(last and last["role"] == "user" and any(b.get("type") == "tool_result" for b in last["content"]))


# --- legacy completions ------------------------------------------------------------------------------

_COMPLETIONS_REFUSED = {"suffix": (None, ""), "echo": (None, False), "best_of": (None, 1), "logprobs": (None, 0)}


def completions_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A legacy completions request as the chat request with the prompt as one user message."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequest(
            "Anthropic models take a single string prompt (not token arrays or several prompts).", param="prompt"
        )
    for key, allowed in _COMPLETIONS_REFUSED.items():
        if body.get(key) not in allowed:
            raise _unsupported(key, "legacy completions on Anthropic models cannot honour it.")
    chat = {k: v for k, v in body.items() if k not in ("prompt", *_COMPLETIONS_REFUSED)}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat
