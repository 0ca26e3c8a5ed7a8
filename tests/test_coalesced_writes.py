"""CoalescedWrites (lockgate/http_server.py): one send per event-loop turn, nothing held past it.

From the outside, tests/test_client_limits.py's client that half-closes after its request checks
that nothing pending is lost when the transport closes itself (it failed before eof_received flushed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from lockgate.http_server import CoalescedWrites


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


async def test_writes_of_one_turn_leave_in_one_send_and_the_next_turn_sends_again() -> None:
    real = RecordingTransport()
    out = CoalescedWrites(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    out.write(b"HTTP/1.1 200 OK\r\n\r\n")
    out.write(b"data: 1\n\n")
    out.write(b"data: 2\n\n")
    assert real.writes == []  # held only until the end of this turn
    assert out.get_write_buffer_size() == 19 + 9 + 9
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\ndata: 1\n\ndata: 2\n\n"]
    out.write(b"data: 3\n\n")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"data: 3\n\n"]
    assert out.get_extra_info("peername") == ("127.0.0.1", 1)  # everything else is the transport's


async def test_close_sends_what_is_pending_first_and_abort_drops_it() -> None:
    real = RecordingTransport()
    out = CoalescedWrites(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    out.write(b"last")
    out.close()
    assert real.writes == [b"last"] and real.closed
    half = RecordingTransport()
    out = CoalescedWrites(half, asyncio.get_running_loop())  # type: ignore[arg-type]
    out.write(b"answer")
    out.flush()  # what the protocol's eof_received does before the transport closes itself
    assert half.writes == [b"answer"]
    other = RecordingTransport()
    out = CoalescedWrites(other, asyncio.get_running_loop())  # type: ignore[arg-type]
    out.write(b"never")
    out.abort()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert other.writes == [] and other.aborted
