"""The fake OpenAI API's /v1/responses: JSON and SSE in OpenAI's exact format, with its state.

Served by FakeOpenAI (openai_upstream.py), which owns the reply, the faults and the recorded
requests. Like OpenAI it remembers stored responses (``store`` default true), so
``previous_response_id`` resolves there (unknown: 400 ``previous_response_not_found``), and
each request's whole conversation as the fake understood it is kept in ``fake.conversations``.
Reasoning: with ``Reply.reasoning`` set, a ``reasoning`` item comes first; its
``encrypted_content`` only when ``include`` asks for ``reasoning.encrypted_content``.

Stream faults (FakeOpenAI's fault list; the HTTP ones — status, close, hang_s — apply as for chat):
    {"drop_after": 2}        the connection drops after 2 text deltas
    {"error_after": 2}       an `error` event after 2 text deltas, then the end
    {"failed_after": 2}      `response.failed` (server_error) after 2 text deltas
    {"end_after": 2}         the body ends after 2 text deltas, no terminal event
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from tests.fakes.openai_upstream import FakeOpenAI

_ECHO = {
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "temperature": 1.0,
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}


def _id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


def _items(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    return list(value or [])


class ResponsesEndpoint:
    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.stored: dict[str, dict[str, Any]] = {}  # id -> {"response", "conversation"}

    def reset(self) -> None:
        self.stored.clear()

    def _shell(self, body: dict[str, Any], response_id: str) -> dict[str, Any]:
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        return {
            "id": response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "model": body.get("model"),
            "output": [],
            **{k: body.get(k, v) if body.get(k) is not None else v for k, v in _ECHO.items()},
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "service_tier": "default",
            "store": body.get("store") is not False,
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "usage": None,
        }

    def _usage(self) -> dict[str, Any]:
        r = self.fake.reply
        return {
            "input_tokens": r.prompt_tokens,
            "input_tokens_details": {"cached_tokens": r.cached_tokens},
            "output_tokens": r.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": r.reasoning_tokens},
            "total_tokens": r.prompt_tokens + r.completion_tokens,
        }

    def _output(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        r = self.fake.reply
        out: list[dict[str, Any]] = []
        if r.reasoning:
            item: dict[str, Any] = {
                "id": _id("rs"),
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": r.reasoning}],
            }
            if "reasoning.encrypted_content" in (body.get("include") or []):
                item["encrypted_content"] = "gAAAA-fake-encrypted-" + item["id"]
            out.append(item)
        text = r.content or ""
        out.append(
            {
                "id": _id("msg"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            }
        )
        return out

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body, early, fault = await self.fake._intake(request)
        if early is not None:
            return early
        previous = body.get("previous_response_id")
        history: list[dict[str, Any]] = []
        if previous is not None:
            if previous not in self.stored:
                return web.Response(
                    status=400,
                    body=orjson.dumps(
                        {
                            "error": {
                                "message": f"Previous response with id '{previous}' not found.",
                                "type": "invalid_request_error",
                                "param": "previous_response_id",
                                "code": "previous_response_not_found",
                            }
                        }
                    ),
                    content_type="application/json",
                )
            history = self.stored[previous]["conversation"]
        conversation = [*history, *_items(body.get("input"))]
        self.fake.conversations.append(conversation)
        response = self._shell(body, _id("resp"))
        output = self._output(body)
        if not body.get("stream"):
            final = {**response, "status": "completed", "output": output, "usage": self._usage()}
            self._remember(body, final, conversation)
            return web.Response(body=orjson.dumps(final), content_type="application/json")
        return await self._stream(request, body, response, output, conversation, fault or {})

    async def delete(self, request: web.Request) -> web.StreamResponse:
        from tests.fakes.openai_upstream import Seen  # (that module imports this one)

        self.fake.requests.append(Seen(request.path, dict(request.headers), None))
        response_id = request.match_info["response_id"]
        if self.stored.pop(response_id, None) is None:
            return web.Response(
                status=404,
                body=self.fake.error_body(f"No response found with id '{response_id}'.", "invalid_request_error"),
                content_type="application/json",
            )
        return web.Response(
            body=orjson.dumps({"id": response_id, "object": "response.deleted", "deleted": True}),
            content_type="application/json",
        )

    def _remember(self, body: dict[str, Any], final: dict[str, Any], conversation: list[dict[str, Any]]) -> None:
        if body.get("store") is not False:
            self.stored[final["id"]] = {"response": final, "conversation": [*conversation, *final["output"]]}

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        response: dict[str, Any],
        output: list[dict[str, Any]],
        conversation: list[dict[str, Any]],
        fault: dict[str, Any],
    ) -> web.StreamResponse:
        fake = self.fake
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        seq = 0

        async def send(kind: str, **fields: Any) -> None:
            nonlocal seq
            event = {"type": kind, "sequence_number": seq, **fields}
            seq += 1
            await resp.write(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")

        try:
            await fake._pause(resp, fault.get("first_event_delay_s"), fault.get("keepalive_s"))
            await send("response.created", response=response)
            await send("response.in_progress", response=response)
            done: list[dict[str, Any]] = []
            for index, item in enumerate(output):
                if item["type"] != "message":
                    await send("response.output_item.added", output_index=index, item={**item, "summary": []})
                    await send("response.output_item.done", output_index=index, item=item)
                    done.append(item)
                    continue
                text = item["content"][0]["text"]
                await send(
                    "response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []}
                )
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                await send("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part)
                words = text.split(" ")
                pieces = [w + " " for w in words[:-1]] + words[-1:]
                for i, piece in enumerate(pieces):
                    if "drop_after" in fault and i >= fault["drop_after"]:
                        assert request.transport is not None
                        request.transport.close()
                        return resp
                    if "end_after" in fault and i >= fault["end_after"]:
                        await resp.write_eof()
                        return resp
                    if "error_after" in fault and i >= fault["error_after"]:
                        await send("error", code="server_error", message="The server had an error.", param=None)
                        await resp.write_eof()
                        return resp
                    if "failed_after" in fault and i >= fault["failed_after"]:
                        error = {"code": "server_error", "message": "The model failed to generate a response."}
                        failed = {**response, "status": "failed", "error": error, "output": done}
                        await send("response.failed", response=failed)
                        await resp.write_eof()
                        return resp
                    await send(
                        "response.output_text.delta",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        delta=piece,
                        logprobs=[],
                    )
                    if i == 0 and fake.hold_after_first is not None:
                        await asyncio.get_running_loop().run_in_executor(None, fake.hold_after_first.wait, 10)
                    if fake.reply.chunk_delay_s:
                        await asyncio.sleep(fake.reply.chunk_delay_s)
                await send(
                    "response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=text, logprobs=[]
                )
                await send(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part={**part, "text": text},
                )
                await send("response.output_item.done", output_index=index, item=item)
                done.append(item)
            final = {**response, "status": "completed", "output": output, "usage": self._usage()}
            self._remember(body, final, conversation)
            await send("response.completed", response=final)
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            fake.disconnects += 1
            fake.stream_closed.set()
            raise
        return resp
