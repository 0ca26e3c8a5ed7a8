"""Pooled upstream HTTP: one aiohttp session per upstream, and an SSE reader.

aiohttp was chosen over httpx by measurement (bench/): it costs a fraction of
httpx's CPU per request, which is most of the gateway's own overhead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from lockgate.config import Deployment
from lockgate.errors import (
    GatewayError,
    ProviderBadResponse,
    ProviderResponseTooLarge,
    ProviderTimeout,
    ProviderTruncated,
    ProviderUnavailable,
    from_upstream_status,
    parse_retry_after,
)


class HttpPool:
    """Shared aiohttp sessions made at start-up: one per upstream base URL and pool settings.

    Deployments that name the same `api_base` with the same `max_connections` and
    `connect_timeout_s` share one pool (the limit is the pool's), so a thousand model groups on
    one server keep a handful of warm connections rather than a pool each (bench/scale.py models:
    1,206 upstream connections after 5 s with a pool per deployment, against 46 with one).
    """

    def __init__(self) -> None:
        self._sessions: dict[tuple[Any, ...], aiohttp.ClientSession] = {}

    def session_for(self, dep: Deployment) -> aiohttp.ClientSession:
        key = (dep.provider, getattr(dep, "api_base", None), dep.max_connections, dep.connect_timeout_s)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = self._new_session(dep)
        return session

    @staticmethod
    def _new_session(dep: Deployment) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=dep.max_connections,
            limit_per_host=dep.max_connections,
            keepalive_timeout=60,
            enable_cleanup_closed=True,
            ttl_dns_cache=300,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # Each request passes its own timeouts (JsonPoster); this only bounds the connect.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=dep.connect_timeout_s),
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def aclose(self) -> None:
        await asyncio.gather(*(s.close() for s in self._sessions.values()), return_exceptions=True)
        self._sessions.clear()


def upstream_name(model: str, base: str) -> str:
    """How messages name an upstream: its model and base URL without credentials (userinfo, query)."""
    try:
        parts = urlsplit(base)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
        shown = urlunsplit((parts.scheme, host + port, parts.path, "", "")) if parts.scheme else base
    except ValueError:
        shown = "its configured address"
    return f"'{model}' at {shown}"


def transport_error(
    err: BaseException, what: str, connect_timeout_s: float | None = None, *, mid_body: bool = False
) -> GatewayError:
    """A client-side failure talking to an upstream, as the error the client should see.

    ``mid_body``: the upstream's headers had arrived, so a broken connection (a reset, a body
    shorter than its content-length) cut an answer short rather than failing to reach it.
    """
    if isinstance(err, aiohttp.ConnectionTimeoutError) and connect_timeout_s is not None:
        return ProviderTimeout(
            f"The upstream {what} could not be connected to within connect_timeout_s ({connect_timeout_s:g} s)."
        )
    if isinstance(err, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return ProviderTimeout(f"The upstream {what} did not answer in time.")
    if isinstance(err, aiohttp.ClientPayloadError) or mid_body:
        return ProviderTruncated(f"The upstream {what} broke off its response ({_cause(err)}).")
    return ProviderUnavailable(f"The upstream {what} could not be reached ({type(err).__name__}).")


def _cause(err: BaseException) -> str:
    """The root of a transport error, named without its text (which may quote the upstream)."""
    while err.__cause__ is not None and err.__cause__ is not err:
        err = err.__cause__
    return type(err).__name__


async def error_from_response(
    resp: aiohttp.ClientResponse, what: str, status_for_type: Mapping[str, int] | None = None
) -> GatewayError:
    """Turn an upstream error response (OpenAI or Anthropic shaped, or neither) into our error.

    ``status_for_type`` maps an ``error.type`` to the status to report (Anthropic names
    its errors by type: overloaded_error is 529 whatever status carried it).
    """
    try:
        raw = await read_capped(resp, ERROR_BODY_BYTES, what)
    except ProviderResponseTooLarge:
        raw = b""  # the status alone then
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


# An upstream's error body is a message, not an answer: more than this is not read.
ERROR_BODY_BYTES = 1024 * 1024


def too_large(what: str, limit: int, setting: str, kind: str = "its answer") -> ProviderResponseTooLarge:
    return ProviderResponseTooLarge(f"The upstream {what} sent more than {setting} ({limit} bytes) in {kind}.")


async def read_capped(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """A response's whole body, refused as soon as it is known to pass ``limit`` bytes (after decompression)."""
    length = resp.content_length
    if length is not None and resp.headers.get("Content-Encoding", "identity") == "identity":
        if length > limit:
            resp.close()
            raise too_large(what, limit, "max_response_bytes")
        return await resp.read()  # aiohttp reads no more than Content-Length
    parts: list[bytes] = []
    size = 0
    async for part in resp.content.iter_any():
        size += len(part)
        if size > limit:
            resp.close()
            raise too_large(what, limit, "max_response_bytes")
        parts.append(part)
    return b"".join(parts)


async def iter_sse(
    content: aiohttp.StreamReader, max_bytes: int | None = None, what: str = "upstream"
) -> AsyncIterator[tuple[str | None, bytes]]:
    """Yield (event, data) for each server-sent event as soon as its blank line arrives.

    Reads whatever the socket brought (one await per read, not per line: an upstream's burst of
    events is framed here in one pass) and splits lines on ``\n`` (a ``\r`` before it dropped).
    ``max_bytes`` caps the whole body (max_stream_bytes), which also bounds what one unfinished
    line can hold in memory.
    """
    event: str | None = None
    data: list[bytes] = []
    partial: list[bytes] = []  # the start of a line whose newline has not come yet
    left = limit = max_bytes if max_bytes is not None else 1 << 62
    while True:
        chunk = await content.readany()
        if chunk:
            left -= len(chunk)
            if left < 0:
                raise too_large(what, limit, "max_stream_bytes", "its stream")
        elif partial:
            chunk = b"\n"  # the body ended mid-line: that line ends here
        else:
            break
        start = 0
        newline = chunk.find(b"\n")
        while newline >= 0:
            line = chunk[start:newline]
            if partial:
                partial.append(line)
                line = b"".join(partial)
                partial.clear()
            start = newline + 1
            newline = chunk.find(b"\n", start)
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data = None, []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode()
            # comments (":") and other fields (id, retry) are ignored
        if start < len(chunk):
            partial.append(chunk[start:] if start else chunk)
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

    The deadlines (decided in docs/routing.md, "Timeouts"), per attempt:
    - connect_timeout_s: TCP connect and TLS handshake of a new connection (aiohttp's sock_connect);
    - a non-streamed answer: timeout_s for everything, from the pool to the last byte of the body;
    - a stream: one deadline from sending until its first event (first_byte_timeout_s, else
      timeout_s, never past max_stream_duration_s); after it, see StreamTimer.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        what: str,
        deployment: Deployment,
        status_for_type: Mapping[str, int] | None = None,
    ) -> None:
        self._session = session
        self.what = what  # names the upstream in messages, never its key
        self._status_for_type = status_for_type
        connect_s = self._connect_s = deployment.connect_timeout_s
        self._total_s = deployment.timeout_s
        # Built once: aiohttp's total covers the body too, so it must stay off for streams.
        self._answer_timeout = aiohttp.ClientTimeout(total=deployment.timeout_s, sock_connect=connect_s)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_s)
        if deployment.first_byte_timeout_s is not None:
            self._first_s, self._first_name = deployment.first_byte_timeout_s, "first_byte_timeout_s"
        else:
            self._first_s, self._first_name = deployment.timeout_s, "timeout_s"
        self._idle_s = deployment.stream_idle_timeout_s
        self._max_s = deployment.max_stream_duration_s
        self._max_response_bytes = deployment.max_response_bytes
        self._max_stream_bytes = deployment.max_stream_bytes

    async def post(self, url: str, payload: dict[str, Any], headers: dict[str, str]) -> aiohttp.ClientResponse:
        """A 2xx response to a non-streamed request, its headers read; timeout_s runs on through the body."""
        try:
            resp = await self._session.post(url, data=orjson.dumps(payload), headers=headers, timeout=self._answer_timeout)
            await self._raise_for_status(resp)
        except TRANSPORT_ERRORS as err:
            raise self._answer_error(err) from None
        return resp

    async def post_stream(
        self, url: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[aiohttp.ClientResponse, "StreamTimer"]:
        """A 2xx response to a streamed request, its headers read, and the timer of its deadlines."""
        data = orjson.dumps(payload)
        now = asyncio.get_running_loop().time()
        end = now + self._max_s if self._max_s is not None else None
        first = now + self._first_s
        first_name = self._first_name
        if end is not None and end < first:
            first, first_name = end, "max_stream_duration_s"
        timer = StreamTimer(self.what, first, f"{first_name} ({(first - now):g} s)", self._idle_s, end, self._max_s)
        timer.max_bytes = self._max_stream_bytes
        try:
            async with asyncio.timeout_at(first):
                resp = await self._session.post(url, data=data, headers=headers, timeout=self._stream_timeout)
                await self._raise_for_status(resp)
        except TRANSPORT_ERRORS as err:
            raise timer.error(err, self._connect_s, opened=False) from None
        return resp, timer

    async def _raise_for_status(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status < 400:
            return
        try:
            raise await error_from_response(resp, self.what, self._status_for_type)
        finally:
            resp.release()

    def _answer_error(self, err: BaseException, *, mid_body: bool = False) -> GatewayError:
        if isinstance(err, asyncio.TimeoutError) and not isinstance(err, aiohttp.ServerTimeoutError):
            return ProviderTimeout(f"The upstream {self.what} did not answer within timeout_s ({self._total_s:g} s).")
        return transport_error(err, self.what, self._connect_s, mid_body=mid_body)

    async def read_json(self, resp: aiohttp.ClientResponse) -> dict[str, Any]:
        """The whole body of a 2xx response as a JSON object."""
        try:
            raw = await read_capped(resp, self._max_response_bytes, self.what)
        except TRANSPORT_ERRORS as err:
            raise self._answer_error(err, mid_body=True) from None
        finally:
            resp.release()
        return json_object(raw, self.what, f"a response ({resp.content_type})")


class StreamDurationExceeded(asyncio.TimeoutError):
    """Set on a stream's body when max_stream_duration_s is reached."""


class StreamTimer:
    """The deadlines of one open stream, in the order they apply.

    Until the first event: the deadline set by JsonPoster.post_stream. From the first event on:
    aiohttp's socket read timeout becomes stream_idle_timeout_s (any bytes count as life, SSE
    comments and pings included; a client slow to read pauses it, as it pauses the socket), and
    max_stream_duration_s, when set, ends the stream at its deadline. One timer handle per
    stream at most: nothing per event but a comparison.
    """

    __slots__ = ("_what", "_first", "_first_label", "_idle_s", "_end", "_max_s", "_handle", "_resp", "expired", "max_bytes")

    def __init__(self, what: str, first: float, first_label: str, idle_s: float, end: float | None, max_s: float | None) -> None:
        self._what = what
        self._first: float | None = first  # loop time; None once the first event arrived
        self._first_label = first_label
        self._idle_s = idle_s
        self._end = end
        self._max_s = max_s
        self._handle: asyncio.TimerHandle | None = None
        self._resp: aiohttp.ClientResponse | None = None
        self.expired = False
        self.max_bytes: int | None = None  # the deployment's max_stream_bytes, for iter_sse

    async def next(
        self, events: AsyncIterator[tuple[str | None, bytes]], resp: aiohttp.ClientResponse
    ) -> tuple[str | None, bytes]:
        """The next SSE event of ``resp``'s body, within whichever deadline applies."""
        if self._first is None:
            return await events.__anext__()
        async with asyncio.timeout_at(self._first):
            event = await events.__anext__()
        self._first = None
        self._started(resp)
        return event

    def _started(self, resp: aiohttp.ClientResponse) -> None:
        # The body may have ended already (a short stream in one read): then nothing is left to time.
        if resp.content.is_eof():
            return
        conn = resp.connection
        if conn is not None and conn.protocol is not None:
            conn.protocol.read_timeout = self._idle_s  # aiohttp resets it for the connection's next request
            conn.protocol.start_timeout()
        if self._end is not None:
            self._resp = resp
            self._handle = asyncio.get_running_loop().call_at(self._end, self._expire)

    def _expire(self) -> None:
        self.expired = True
        resp = self._resp
        if resp is not None:
            resp.content.set_exception(StreamDurationExceeded())
            resp.close()  # frees the upstream now, even while the relay waits on the client

    def error(self, err: BaseException, connect_timeout_s: float | None = None, *, opened: bool = True) -> GatewayError:
        """The error for a failure while the stream was open (or, ``opened`` false, opening), naming the deadline that ended it."""
        what = self._what
        if self.expired:
            # The operator's cap, not the deployment's fault: not retried, not resumed, not counted against it.
            return ProviderTimeout(
                f"The stream from the upstream {what} reached max_stream_duration_s ({self._max_s:g} s).",
                code="max_stream_duration",
                retryable=False,
            )
        if isinstance(err, aiohttp.ConnectionTimeoutError):
            return transport_error(err, what, connect_timeout_s)
        if self._first is not None and isinstance(err, asyncio.TimeoutError):
            return ProviderTimeout(f"The upstream {what} sent no stream event within {self._first_label}.")
        if isinstance(err, aiohttp.SocketTimeoutError):
            return ProviderTimeout(f"The upstream {what} sent nothing for stream_idle_timeout_s ({self._idle_s:g} s) mid-stream.")
        return transport_error(err, what, connect_timeout_s, mid_body=opened)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._resp = None


def not_an_event_stream(resp: aiohttp.ClientResponse) -> bool:
    """A 2xx answer to a stream request that is plainly something else (a JSON body, an HTML page)."""
    return resp.content_type in ("application/json", "text/html")


def json_object(data: bytes, what: str, kind: str = "a stream event") -> dict[str, Any]:
    """A body or SSE event as a JSON object, or the error for an upstream that sent something else."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ProviderBadResponse(f"The upstream {what} sent {kind} that is not a JSON object.")
    return value
