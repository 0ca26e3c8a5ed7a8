"""A "Redis" that hangs: it accepts TCP connections on 127.0.0.1 and reads, but never answers.

Not a dead Redis (that refuses connections, and every client notices at once):
this is the stuck one, a stopped process or a network path that drops replies,
which only a deadline on the client's side can cut off. A client then hangs in
its connection handshake (redis-py opens with HELLO). With ``handshake=True``
it answers the handshake (HELLO, CLIENT, SELECT) and hangs on every other
command instead, like a server stuck in a long script: the client's own
commands reach it, and ``saw`` tells which.
"""

from __future__ import annotations

import asyncio
import threading


class HangingRedis:
    def __init__(self, handshake: bool = False) -> None:
        self.handshake = handshake
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="hanging-redis")
        self._server: asyncio.Server | None = None
        self._lock = threading.Lock()
        self._received = bytearray()
        self.connections = 0
        self.port = 0

    def start(self) -> "HangingRedis":
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        pending = b""
        try:
            while data := await reader.read(65536):  # read everything, answer nothing (or the handshake only)
                with self._lock:
                    self._received += data
                if self.handshake:
                    pending += data
                    commands, pending = _split_commands(pending)
                    for name in commands:
                        if name in _HANDSHAKE:
                            writer.write(_HANDSHAKE[name])
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def received(self) -> bytes:
        """Every byte clients sent, all connections together (RESP: command names appear as written)."""
        with self._lock:
            return bytes(self._received)

    def saw(self, command: str) -> bool:
        return f"\r\n{command}\r\n".encode() in self.received().upper()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                # connections still open end with the loop

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# RESP3 replies to what a client sends when it connects; anything else is never answered.
_HELLO = {"server": "redis", "version": "7.2.0", "proto": 3, "id": 1, "mode": "standalone", "role": "master"}
_HANDSHAKE = {
    b"HELLO": (
        f"%{len(_HELLO)}\r\n".encode()
        + b"".join(
            f"${len(k)}\r\n{k}\r\n".encode() + (f":{v}\r\n" if isinstance(v, int) else f"${len(v)}\r\n{v}\r\n").encode()
            for k, v in _HELLO.items()
        )
    ),
    b"CLIENT": b"+OK\r\n",
    b"SELECT": b"+OK\r\n",
}


def _split_commands(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete RESP commands (arrays of bulk strings) in ``buffer``: their names, and the rest."""
    names: list[bytes] = []
    while buffer.startswith(b"*"):
        end = buffer.find(b"\r\n")
        if end < 0:
            break
        count, pos, args = int(buffer[1:end]), end + 2, []
        for _ in range(count):
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                return names, buffer
            size = int(buffer[pos + 1 : line_end])
            if len(buffer) < line_end + 2 + size + 2:
                return names, buffer
            args.append(buffer[line_end + 2 : line_end + 2 + size])
            pos = line_end + 2 + size + 2
        names.append(args[0].upper() if args else b"")
        buffer = buffer[pos:]
    return names, buffer
