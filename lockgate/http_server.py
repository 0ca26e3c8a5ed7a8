"""uvicorn's httptools protocol with the limits it lacks: bounded request headers and slow-client deadlines.

httptools (llhttp) accepts request headers of any size and uvicorn waits for a request's headers and
body without end, so one slow or hostile client can hold memory and a connection for ever. This
subclass adds, per connection and only where needed (docs/limits.md):

- ``max_header_bytes``: the request line and headers together; past it a 431, the connection closed.
  Counted from the bytes received while the headers are incomplete, so a header that never ends
  is refused as soon as it passes the limit, not when it ends.
- ``header_timeout_s``: a new connection must send a request's headers within it (one that sends
  nothing is closed silently); a request whose headers started must finish them within it: 408.
- ``body_timeout_s``: once its headers are in, a request's body must arrive within it, whatever the
  pace: 408 (if no answer started yet) and the connection closed.

A request that arrives whole in one read (nearly all) starts no timer: the deadlines are armed only
when a read ends mid-request. Every refusal is an OpenAI error (Anthropic's on /v1/messages), counted
in ``lockgate_http_refused_total{reason}``; a malformed request gets the same 400 JSON instead of
uvicorn's plain text. The protocol is uvicorn's (pinned): a uvicorn upgrade is checked by
tests/test_client_limits.py.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from lockgate.api.http import DISCONNECT, DisconnectWatch, new_request_id, refusal
from lockgate.errors import GatewayError, HeadersTooLarge, InvalidRequest, RequestTimeout

log = structlog.get_logger("lockgate.http")


@dataclass(frozen=True)
class ClientLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    metrics: bool = True
    # Added to every refusal, as api/front.py adds them to every answer.
    headers: tuple[tuple[bytes, bytes], ...] = field(default_factory=tuple)


class CoalescedWrites:
    """The transport as the protocol writes to it: what is written in one turn of the event loop leaves in one send.

    An answer's head and body, and the SSE events of a burst the upstream sent together, were one
    system call each; they are joined and sent once, at the end of the loop's current turn (before
    it waits for anything). Closing sends what is pending first, and so does the protocol when the
    client half-closes (``eof_received``: the transport then closes itself); everything else is the
    transport's.
    """

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            pending.append(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        pending = self._pending
        return self._transport.get_write_buffer_size() + (sum(map(len, pending)) if pending else 0)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal is in the protocol's ``_refusal``."""


def _count(reason: str) -> None:
    from lockgate.telemetry.metrics import count_refusal  # after the workers' PROMETHEUS_MULTIPROC_DIR is set

    count_refusal(reason)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: ClientLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._in_head = True  # before the current request's last header (a new connection too)
        self._in_body = False  # between its last header and its body's last byte
        self._head_bytes = 0  # received while the head was incomplete
        self._timer: asyncio.TimerHandle | None = None
        self._refusal: GatewayError | None = None

    # --- deadlines ------------------------------------------------------------------------

    def _arm(self, seconds: float, handler: Any) -> None:
        self._timer = self.loop.call_later(seconds, handler)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_deadline(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if not self._head_bytes:  # a connection that never sent a byte: nobody to answer
            self.transport.close()
            return
        seconds = self._limits.header_timeout_s
        self._refuse(
            RequestTimeout(f"The request's headers did not arrive within header_timeout_s ({seconds:g} s)."), "header_timeout"
        )

    def _body_deadline(self) -> None:
        self._timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or cycle.response_complete:
            return
        seconds = self._limits.body_timeout_s
        err = RequestTimeout(f"The request's body did not arrive within body_timeout_s ({seconds:g} s).")
        if cycle.response_started:
            _count("body_timeout")
            self.transport.close()  # an answer already began: it can only be cut
        else:
            self._refuse(err, "body_timeout", path=self.scope.get("path", ""))
        # The route waiting for the body now reads a disconnect, and its answer goes nowhere.
        cycle.disconnected = True
        cycle.message_event.set()

    # --- refusals -------------------------------------------------------------------------

    def _refuse(self, err: GatewayError, reason: str, path: str = "") -> None:
        if self._limits.metrics:
            _count(reason)
        log.info("request_refused", reason=reason, client=self.client[0] if self.client else None)
        status, headers, body = refusal(err, path)
        lines = [STATUS_LINE[status]]
        extra = [*self.server_state.default_headers, *self._limits.headers]
        extra += [(k.encode(), v.encode()) for k, v in headers.items()]
        extra.append((b"x-request-id", new_request_id().encode()))
        for name, value in extra:
            lines += [name, b": ", value, b"\r\n"]
        lines += [
            b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nconnection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(lines))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser refused: ours instead, in JSON."""
        if self._refusal is not None:
            err, self._refusal = self._refusal, None
            self._refuse(err, "header_too_large")
            return
        self._refuse(InvalidRequest("The request is not valid HTTP/1.1."), "bad_http")

    # --- the protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]
        self._arm(self._limits.header_timeout_s, self._header_deadline)  # a connection that sends nothing

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and cycle.disconnected:
            # A relay waiting on its upstream hears it now, not at its next write.
            watch: DisconnectWatch = cycle.scope["extensions"][DISCONNECT]  # type: ignore[assignment]
            watch.connection_lost()

    def eof_received(self) -> None:
        # The client half-closed: the transport closes itself once this returns, sending what its own
        # buffer holds, so what this turn wrote must be in it by then (else that answer is lost).
        self.transport.flush()  # type: ignore[attr-defined]
        super().eof_received()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {DISCONNECT: DisconnectWatch()}  # type: ignore[dict-item]

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)  # feeds the parser; its callbacks below move the state on
        if self.transport.is_closing():
            return
        if self._in_head:
            if self._head_bytes > self._limits.max_header_bytes:
                self._disarm()
                self._refuse(self._too_large(), "header_too_large")
            elif self._head_bytes and self._timer is None:
                self._arm(self._limits.header_timeout_s, self._header_deadline)
        elif self._in_body and self._timer is None:
            self._arm(self._limits.body_timeout_s, self._body_deadline)

    def _too_large(self) -> GatewayError:
        return HeadersTooLarge(f"The request's headers pass max_header_bytes ({self._limits.max_header_bytes} bytes).")

    def on_headers_complete(self) -> None:
        if self._head_bytes > self._limits.max_header_bytes:
            # This read also carried body bytes: measure the head itself (rare, so exact here only).
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > self._limits.max_header_bytes:
                self._refusal = self._too_large()
                raise _Refused()
        self._disarm()
        self._in_head, self._in_body = False, True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._in_body, self._head_bytes = True, False, 0
        super().on_message_complete()


def protocol(limits: ClientLimits) -> Any:
    """What ``uvicorn.run(http=...)`` takes: the protocol class bound to these limits (picklable for workers)."""
    return functools.partial(LimitedHttpToolsProtocol, limits=limits)
