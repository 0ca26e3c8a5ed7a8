"""Pooled upstream HTTP: one aiohttp session per upstream, and an SSE reader.

aiohttp was chosen over httpx by measurement (bench/): it costs a fraction of
httpx's CPU per request, which is most of the gateway's own overhead.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Mapping

import aiohttp
import orjson

from lockgate.config import Deployment
from lockgate.errors import (
    GatewayError,
    ProviderBadResponse,
    ProviderTimeout,
    ProviderUnavailable,
    from_upstream_status,
    parse_retry_after,
)


class HttpPool:
    """Shared aiohttp sessions, one per (deployment) upstream, made at start-up."""

    def __init__(self) -> None:
        self._sessions: list[aiohttp.ClientSession] = []

    def session_for(self, dep: Deployment) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=dep.max_connections,
            limit_per_host=dep.max_connections,
            keepalive_timeout=60,
            enable_cleanup_closed=True,
            ttl_dns_cache=300,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=dep.timeout_s,
                sock_connect=dep.connect_timeout_s,
                sock_read=dep.stream_idle_timeout_s,
            ),
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )
        self._sessions.append(session)
        return session

    async def aclose(self) -> None:
        await asyncio.gather(*(s.close() for s in self._sessions), return_exceptions=True)
        self._sessions.clear()


def transport_error(err: BaseException, what: str) -> GatewayError:
    """A client-side failure talking to an upstream, as the error the client should see."""
    if isinstance(err, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return ProviderTimeout(f"The upstream {what} did not answer in time.")
    if isinstance(err, aiohttp.ClientPayloadError):
        return ProviderBadResponse(f"The upstream {what} broke off its response.")
    return ProviderUnavailable(f"The upstream {what} could not be reached ({type(err).__name__}).")


async def error_from_response(
    resp: aiohttp.ClientResponse, what: str, status_for_type: Mapping[str, int] | None = None
) -> GatewayError:
    """Turn an upstream error response (OpenAI or Anthropic shaped, or neither) into our error.

    ``status_for_type`` maps an ``error.type`` to the status to report (Anthropic names
    its errors by type: overloaded_error is 529 whatever status carried it).
    """
    raw = await resp.read()
    message, etype, code, param = f"The upstream {what} answered HTTP {resp.status}.", None, None, None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        message = str(err.get("message") or message)
        etype = err.get("type") if isinstance(err.get("type"), str) else None
        code = err.get("code") if isinstance(err.get("code"), str) else None
        param = err.get("param") if isinstance(err.get("param"), str) else None
    status = resp.status
    if status_for_type and etype is not None and etype in status_for_type:
        status = status_for_type[etype]
    return from_upstream_status(
        status, message, type=etype, code=code, param=param, retry_after_s=parse_retry_after(resp.headers)
    )


async def iter_sse(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str | None, bytes]]:
    """Yield (event, data) for each server-sent event as soon as its blank line arrives."""
    event: str | None = None
    data: list[bytes] = []
    async for raw in content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield event, b"\n".join(data)
            event, data = None, []
            continue
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
        # comments (":") and other fields (id, retry) are ignored
    if data:
        yield event, b"\n".join(data)


TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)

# Drains in flight, kept referenced until done (the loop holds tasks only weakly).
_DRAINS: set[asyncio.Task[None]] = set()


def drain_in_background(resp: aiohttp.ClientResponse, timeout_s: float = 5.0) -> None:
    """Read the rest of a finished response's body off the hot path, then give the connection back.

    An upstream may hold the body open a moment after its last event: releasing at once would
    drop the connection (and cut the upstream's response off), waiting would delay the client.
    """

    async def drain() -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while await resp.content.readany():
                    pass
            resp.release()
        except BaseException:
            resp.close()

    task = asyncio.ensure_future(drain())
    _DRAINS.add(task)
    task.add_done_callback(_DRAINS.discard)


class JsonPoster:
    """POSTs JSON to one upstream and turns every failure into the error a client should see.

    The first-byte timeout is one deadline for the whole wait (headers, then the
    first stream event), not a fresh timeout for each step.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        what: str,
        first_byte_timeout_s: float | None,
        status_for_type: Mapping[str, int] | None = None,
    ) -> None:
        self._session = session
        self.what = what  # names the upstream in messages, never its key
        self._first_byte_timeout_s = first_byte_timeout_s
        self._status_for_type = status_for_type

    async def post(self, url: str, payload: dict[str, Any], headers: dict[str, str]) -> tuple[aiohttp.ClientResponse, float | None]:
        """A 2xx response with its headers read, and the first-byte deadline (loop time) still running."""
        data = orjson.dumps(payload)
        deadline = asyncio.get_running_loop().time() + self._first_byte_timeout_s if self._first_byte_timeout_s else None
        try:
            if deadline is not None:
                async with asyncio.timeout_at(deadline):
                    resp = await self._session.post(url, data=data, headers=headers)
            else:
                resp = await self._session.post(url, data=data, headers=headers)
        except TRANSPORT_ERRORS as err:
            raise transport_error(err, self.what) from None
        if resp.status >= 400:
            try:
                raise await error_from_response(resp, self.what, self._status_for_type)
            except TRANSPORT_ERRORS as err:
                raise transport_error(err, self.what) from None
            finally:
                resp.release()
        return resp, deadline

    async def read_json(self, resp: aiohttp.ClientResponse) -> dict[str, Any]:
        """The whole body of a 2xx response as a JSON object."""
        try:
            raw = await resp.read()
        except TRANSPORT_ERRORS as err:
            raise transport_error(err, self.what) from None
        finally:
            resp.release()
        return json_object(raw, self.what, "a response")


async def next_event(
    events: AsyncIterator[tuple[str | None, bytes]], deadline: float | None
) -> tuple[str | None, bytes]:
    """The next SSE event, within the first-byte deadline when one is still running."""
    if deadline is None:
        return await events.__anext__()
    async with asyncio.timeout_at(deadline):
        return await events.__anext__()


def json_object(data: bytes, what: str, kind: str = "a stream event") -> dict[str, Any]:
    """A body or SSE event as a JSON object, or the error for an upstream that sent something else."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ProviderBadResponse(f"The upstream {what} sent {kind} that is not a JSON object.")
    return value
