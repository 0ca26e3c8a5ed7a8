"""Realistic examples for the OpenAPI spec (data only), as the mock provider and the gateway answer."""

from __future__ import annotations

from typing import Any

CHAT_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name one prime number."},
    ],
    "max_tokens": 50,
    "temperature": 0.2,
}
CHAT_STREAM_REQUEST: dict[str, Any] = {**CHAT_REQUEST, "stream": True, "stream_options": {"include_usage": True}}
CHAT_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-9f2c1a7e4b8d4e0f9a6b3c21",
    "object": "chat.completion",
    "created": 1764633600,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "7", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 22, "completion_tokens": 1, "total_tokens": 23, "prompt_tokens_details": {"cached_tokens": 0}},
    "system_fingerprint": "fp_44709d6fcb",
}
_CHUNK = '{"id":"chatcmpl-9f2c","object":"chat.completion.chunk","created":1764633600,"model":"gpt-4o-mini",'
CHAT_STREAM = (
    f'data: {_CHUNK}"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]}}\n\n'
    f'data: {_CHUNK}"choices":[{{"index":0,"delta":{{"content":"7"}},"finish_reason":null}}]}}\n\n'
    f'data: {_CHUNK}"choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}]}}\n\n'
    f'data: {_CHUNK}"choices":[],"usage":{{"prompt_tokens":22,"completion_tokens":1,"total_tokens":23}}}}\n\n'
    "data: [DONE]\n\n"
)
COMPLETION_REQUEST: dict[str, Any] = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello in French:", "max_tokens": 8}
COMPLETION_RESPONSE: dict[str, Any] = {
    "id": "cmpl-4b8d4e0f9a6b3c219f2c1a7e",
    "object": "text_completion",
    "created": 1764633600,
    "model": "gpt-3.5-turbo-instruct",
    "choices": [{"text": " Bonjour", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}
COMPLETION_STREAM = (
    'data: {"id":"cmpl-4b8d","object":"text_completion","created":1764633600,"model":"gpt-3.5-turbo-instruct",'
    '"choices":[{"text":" Bonjour","index":0,"logprobs":null,"finish_reason":null}]}\n\n'
    "data: [DONE]\n\n"
)
EMBEDDING_REQUEST: dict[str, Any] = {"model": "text-embedding-3-small", "input": ["The food was delicious."], "dimensions": 4}
EMBEDDING_RESPONSE: dict[str, Any] = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.0123, -0.5521, 0.3344, 0.7645]}],
    "model": "text-embedding-3-small",
    "usage": {"prompt_tokens": 5, "total_tokens": 5},
}
MODEL: dict[str, Any] = {"id": "gpt-4o-mini", "object": "model", "created": 1764633600, "owned_by": "openai"}
MODEL_LIST: dict[str, Any] = {
    "object": "list",
    "data": [MODEL, {"id": "claude-sonnet", "object": "model", "created": 1764633600, "owned_by": "anthropic"}],
}
MESSAGES_REQUEST: dict[str, Any] = {
    "model": "claude-sonnet",
    "max_tokens": 256,
    "system": "You are terse.",
    "messages": [{"role": "user", "content": "Name one prime number."}],
}
MESSAGES_RESPONSE: dict[str, Any] = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet",
    "content": [{"type": "text", "text": "7"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 14, "output_tokens": 1},
}
MESSAGES_STREAM = (
    "event: message_start\n"
    'data: {"type":"message_start","message":{"id":"msg_01XF","type":"message","role":"assistant","model":"claude-sonnet",'
    '"content":[],"stop_reason":null,"usage":{"input_tokens":14,"output_tokens":0}}}\n\n'
    "event: content_block_start\n"
    'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"7"}}\n\n'
    "event: content_block_stop\n"
    'data: {"type":"content_block_stop","index":0}\n\n'
    "event: message_delta\n"
    'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}\n\n'
    "event: message_stop\n"
    'data: {"type":"message_stop"}\n\n'
)
COUNT_TOKENS_REQUEST: dict[str, Any] = {"model": "claude-sonnet", "messages": [{"role": "user", "content": "Hello"}]}
RESPONSES_REQUEST: dict[str, Any] = {"model": "gpt-4o-mini", "instructions": "You are terse.", "input": "Name one prime number."}
RESPONSE_OBJECT: dict[str, Any] = {
    "id": "resp_67ccd2bed1ec8190b14f964abc054267",
    "object": "response",
    "created_at": 1764633600,
    "status": "completed",
    "model": "gpt-4o-mini",
    "output": [
        {
            "type": "message",
            "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e6",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "7", "annotations": []}],
        }
    ],
    "usage": {"input_tokens": 22, "output_tokens": 1, "total_tokens": 23},
}
RESPONSES_STREAM = (
    "event: response.created\n"
    'data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_67cc","object":"response","status":"in_progress"}}\n\n'
    "event: response.output_text.delta\n"
    'data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67cc","output_index":0,'
    '"content_index":0,"delta":"7"}\n\n'
    "event: response.completed\n"
    'data: {"type":"response.completed","sequence_number":8,"response":{"id":"resp_67cc","object":"response","status":"completed"}}\n\n'
)
KEY_CREATE: dict[str, Any] = {
    "name": "search-team-prod",
    "team": "search",
    "models": ["gpt-4o-mini", "claude-sonnet"],
    "rpm": 600,
    "max_budget_usd": 50.0,
    "budget_period": "monthly",
}
KEY_VIEW: dict[str, Any] = {
    "object": "api_key",
    "id": "key_3f9a1c2b7d4e",
    "key_prefix": "lg-Xk3v9",
    "name": "search-team-prod",
    "user": None,
    "team": "search",
    "models": ["gpt-4o-mini", "claude-sonnet"],
    "rpm": 600,
    "tpm": None,
    "max_budget_usd": 50.0,
    "budget_period": "monthly",
    "expires_at": None,
    "metadata": None,
    "created_at": "2026-12-01T09:30:00Z",
    "updated_at": "2026-12-01T09:30:00Z",
    "last_used_at": None,
    "revoked": False,
    "revoked_at": None,
}
KEY_CREATED: dict[str, Any] = {"key": "lg-Xk3v9q2RrT8bWm1ZpL6yA0sN4eUfHc7d", **KEY_VIEW}
TEAM_CREATE: dict[str, Any] = {"id": "search", "max_budget_usd": 500.0, "budget_period": "monthly", "rpm": 3000}
TEAM_VIEW: dict[str, Any] = {
    "object": "team",
    "id": "search",
    "max_budget_usd": 500.0,
    "budget_period": "monthly",
    "rpm": 3000,
    "tpm": None,
    "metadata": None,
    "created_at": "2026-12-01T09:30:00Z",
    "updated_at": "2026-12-01T09:30:00Z",
}
USAGE_REPORT: dict[str, Any] = {
    "object": "list",
    "group_by": "model",
    "start": "2026-11-02",
    "end": "2026-12-01",
    "data": [
        {
            "model": "gpt-4o-mini",
            "requests": 1520,
            "prompt_tokens": 820113,
            "completion_tokens": 120554,
            "cached_tokens": 0,
            "cost_usd": 0.195349,
            "errors": 3,
        }
    ],
}
READY: dict[str, Any] = {
    "status": "ready",
    "checks": {"database": {"status": "ok"}, "sinks": {"status": "ok", "queue_depth": 0, "dropped": 0}},
}
METRICS = (
    "# HELP lockgate_requests_total Requests answered\n"
    "# TYPE lockgate_requests_total counter\n"
    'lockgate_requests_total{endpoint="chat",model="gpt-4o-mini",status="200"} 1520.0\n'
)
