"""The OpenAI stream reader (providers/openai.py OpenAIStream over providers/http.py iter_sse).

The fixtures in tests/fixtures/sse/ are SSE bodies byte for byte in OpenAI's chat-completion stream
format (written to that format, not captured: no internet here). A raw asyncio server on 127.0.0.1
sends them as an HTTP response, whole or a few bytes per write, so the real aiohttp client, the real
StreamTimer and the real reader see them as they would an upstream's. iter_sse's own framing is also
checked over an aiohttp StreamReader fed by hand, where exactly what has arrived is controlled.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.base_protocol import BaseProtocol

from lockgate.config import parse_config
from lockgate.errors import ProviderBadResponse, ProviderResponseTooLarge, ProviderServerError
from lockgate.providers.http import iter_sse
from lockgate.providers.openai import OpenAIProvider

FIXTURES = Path(__file__).parent / "fixtures" / "sse"


class SSEServer:
    """Answers each POST with 200 text/event-stream and the given body, then closes the connection."""

    def __init__(self, body: bytes, piece: int | None = None) -> None:
        self.body, self.piece = body, piece  # piece: bytes per write (None: all at once)
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SSEServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        self.requests.append(orjson.loads(await reader.readexactly(length)))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        )
        step = self.piece or len(self.body)
        for i in range(0, len(self.body), step):
            writer.write(self.body[i : i + step])
            await writer.drain()
            if self.piece:
                await asyncio.sleep(0.002)  # separate TCP reads for the client
        writer.close()


async def read_stream(name: str, piece: int | None = None) -> tuple[list[dict[str, Any]], Any, BaseException | None, SSEServer]:
    """Stream one fixture through OpenAIProvider: the chunks it yielded, its usage and the error it raised."""
    async with SSEServer((FIXTURES / name).read_bytes(), piece) as server:
        cfg = parse_config(
            {
                "models": [
                    {
                        "name": "gpt-public",
                        "deployments": [
                            {
                                "provider": "openai",
                                "model": "gpt-4o-mini",
                                "api_base": f"http://127.0.0.1:{server.port}/v1",
                                "api_key": "sk-test-reader",
                                "timeout_s": 10,
                            }
                        ],
                    }
                ]
            },
            env={},
        )
        async with aiohttp.ClientSession() as session:
            provider = OpenAIProvider(cfg.models[0].deployments[0], session)
            stream = await provider.chat_stream({"model": "gpt-4o-mini", "messages": [], "stream": True})
            chunks: list[dict[str, Any]] = []
            error: BaseException | None = None
            try:
                async for c in stream:
                    chunks.append(c)
            except Exception as err:  # the test asserts which
                error = err
            finally:
                await stream.aclose()
                await stream.aclose()  # safe twice, as the protocol promises
        return chunks, stream.usage, error, server


def content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


@pytest.mark.parametrize("piece", [None, 7], ids=["whole", "7-byte-writes"])
@pytest.mark.parametrize("name", ["normal.sse", "crlf.sse", "keepalive.sse"])
async def test_a_complete_stream_yields_every_chunk_and_the_usage(name: str, piece: int | None) -> None:
    chunks, usage, error, server = await read_stream(name, piece)
    assert error is None
    assert len(chunks) == 5  # role, two texts, finish, usage; [DONE] and comments are not chunks
    assert content(chunks) == "Hello there"
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[4]["choices"] == []
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (12, 3, 4)
    # The stream always asks for the usage chunk.
    assert server.requests[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("piece", [None, 5], ids=["whole", "5-byte-writes"])
async def test_an_error_event_mid_stream_raises_after_the_chunks_before_it(piece: int | None) -> None:
    chunks, usage, error, _ = await read_stream("error_midstream.sse", piece)
    assert content(chunks) == "Hello" and len(chunks) == 2
    assert isinstance(error, ProviderServerError)
    assert error.message == "The server had an error while processing your request. Sorry about that!"
    assert error.retryable and usage is None


async def test_a_clean_end_without_finish_reason_or_done_is_a_bad_response() -> None:
    chunks, usage, error, _ = await read_stream("clean_end_unfinished.sse")
    assert content(chunks) == "Hello the"
    assert isinstance(error, ProviderBadResponse)
    assert "ended its stream before finishing" in error.message
    assert error.retryable  # so a stream_resume model resumes it
    assert usage is None


async def test_malformed_json_is_a_bad_response() -> None:
    chunks, _, error, _ = await read_stream("malformed_json.sse")
    assert len(chunks) == 1
    assert isinstance(error, ProviderBadResponse)
    assert "not a JSON object" in error.message


# --- iter_sse's framing, fed by hand ----------------------------------------------------------


async def hand_fed() -> tuple[aiohttp.StreamReader, asyncio.BaseTransport, socket.socket]:
    """A StreamReader over a connected protocol (it refuses to wait on a closed one); bytes come only by hand."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, protocol = await loop.create_connection(lambda: BaseProtocol(loop), sock=ours)
    return aiohttp.StreamReader(protocol, 2**16, loop=loop), transport, theirs


async def next_event(events: AsyncIterator[tuple[str | None, bytes]]) -> tuple[str | None, bytes]:
    return await asyncio.wait_for(events.__anext__(), 1)


async def test_an_event_split_across_reads_is_yielded_only_at_its_blank_line() -> None:
    content_, transport, peer = await hand_fed()
    try:
        await split_event_checks(content_)
    finally:
        transport.close()
        peer.close()


async def split_event_checks(content_: aiohttp.StreamReader) -> None:
    events = iter_sse(content_).__aiter__()
    content_.feed_data(b'data: {"a":')
    pending = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(0.01)
    assert not pending.done()  # half an event: nothing yet
    content_.feed_data(b' 1}\r\ndata: {"b": 2}\r\n')
    await asyncio.sleep(0.01)
    assert not pending.done()  # the lines are in but the event is not over
    content_.feed_data(b"\r\nevent: ping\ndata: x\n\n: comment\n\ndata: [DONE]\n\n")
    assert await asyncio.wait_for(pending, 1) == (None, b'{"a": 1}\n{"b": 2}')  # multi-line data joined by \n
    assert await next_event(events) == ("ping", b"x")
    assert await next_event(events) == (None, b"[DONE]")  # the comment was no event
    content_.feed_data(b"data: tail-without-blank-line")
    content_.feed_eof()
    assert await next_event(events) == (None, b"tail-without-blank-line")
    with pytest.raises(StopAsyncIteration):
        await next_event(events)


class _Reads:
    """readany() in pieces of ``size`` bytes, as a socket may deliver them; b"" at the end."""

    def __init__(self, raw: bytes, size: int) -> None:
        self._pieces = [raw[i : i + size] for i in range(0, len(raw), size)]

    async def readany(self) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 1 << 20])
async def test_the_same_events_whatever_the_reads_cut(size: int) -> None:
    raw = b"".join(p.read_bytes() for p in sorted(FIXTURES.glob("*.sse")))
    raw += b'event: ping\r\ndata: {"a":\r\ndata:  1}\r\n\r\n: comment\n\nretry: 5\ndata: tail'
    whole = [e async for e in iter_sse(_Reads(raw, len(raw)))]  # type: ignore[arg-type]
    assert len(whole) > 20 and whole[-2:] == [("ping", b'{"a":\n 1}'), (None, b"tail")]
    assert [e async for e in iter_sse(_Reads(raw, size))] == whole  # type: ignore[arg-type]


async def test_a_stream_past_max_bytes_is_refused_even_without_a_newline() -> None:
    events = iter_sse(_Reads(b"data: " + b"x" * 5000, 100), max_bytes=4096)  # type: ignore[arg-type]
    with pytest.raises(ProviderResponseTooLarge, match="max_stream_bytes"):
        _ = [e async for e in events]
