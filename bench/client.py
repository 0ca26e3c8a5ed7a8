"""A tiny HTTP/1.1 client (raw sockets) for readiness, the wire-format check,
TTFT and the paired runs."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

from common import BODY_NS, BODY_S, CONTENT, EXTRA_HEADERS, HOST, KEY, MODEL, N_CHUNKS, Proc

_CONTENT_RE = re.compile(rb'"content":\s*"tok')


class HttpConn:
    def __init__(self, port: int):
        self.port = port
        self.r = self.w = None

    async def _connect(self):
        self.r, self.w = await asyncio.open_connection(HOST, self.port)
        sock = self.w.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self):
        if self.w is not None:
            self.w.close()
            try:
                await self.w.wait_closed()
            except Exception:
                pass
            self.r = self.w = None

    async def request(self, method: str, path: str, body: bytes | None = None, key: str | None = KEY, timeout: float = 30.0):
        """Returns (status, headers, body, t_first_token_s, t_total_s)."""
        return await asyncio.wait_for(self._request(method, path, body, key), timeout)

    async def _request(self, method, path, body, key):
        if self.w is None:
            await self._connect()
        head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        if key:
            head.append(f"Authorization: Bearer {key}")
        head += [f"{k}: {v}" for k, v in EXTRA_HEADERS.get(self.port, {}).items()]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
        t0 = time.perf_counter()
        self.w.write(raw)
        r = self.r
        status_line = await r.readline()
        if not status_line:
            await self.close()
            raise ConnectionError("connection closed before response")
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = await r.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        ttft = None
        out = bytearray()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await r.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (await r.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += (await r.readexactly(size + 2))[:-2]
                if ttft is None and _CONTENT_RE.search(out):
                    ttft = time.perf_counter() - t0
        elif "content-length" in headers:
            out += await r.readexactly(int(headers["content-length"]))
        else:  # read to close
            out += await r.read()
            await self.close()
        total = time.perf_counter() - t0
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, bytes(out), ttft, total


async def _get_status(port: int, path: str) -> int:
    c = HttpConn(port)
    try:
        st, *_ = await c.request("GET", path, timeout=2.0)
        return st
    finally:
        await c.close()


def wait_ready(port: int, path: str | None, proc: Proc | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            return False
        try:
            if path is None:
                socket.create_connection((HOST, port), timeout=1).close()
                return True
            if asyncio.run(_get_status(port, path)) == 200:
                return True
        except Exception:
            pass
        time.sleep(0.3)
    return False


def parse_sse(body: bytes) -> tuple[list[dict], bool]:
    events, done = [], False
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                elif data:
                    events.append(json.loads(data))
    return events, done


async def smoke(port: int, path: str) -> list[str]:
    """Check the wire format through a target; returns a list of problems."""
    problems = []
    c = HttpConn(port)
    try:
        st, h, body, _, _ = await c.request("POST", path, json.dumps(BODY_NS).encode())
        if st != 200:
            problems.append(f"non-stream: HTTP {st}: {body[:300]!r}")
        else:
            j = json.loads(body)
            if j.get("object") != "chat.completion":
                problems.append(f"non-stream: object={j.get('object')!r}")
            if j.get("model") != MODEL:
                problems.append(f"non-stream: model={j.get('model')!r}")
            msg = (j.get("choices") or [{}])[0].get("message", {})
            if msg.get("content") != CONTENT:
                problems.append(f"non-stream: content={msg.get('content')!r}")
            if (j.get("usage") or {}).get("total_tokens") != 12 + N_CHUNKS:
                problems.append(f"non-stream: usage={j.get('usage')!r}")
        st, h, body, ttft, _ = await c.request("POST", path, json.dumps(BODY_S).encode())
        if st != 200:
            problems.append(f"stream: HTTP {st}: {body[:300]!r}")
        else:
            events, done = parse_sse(body)
            text = "".join(
                (e.get("choices") or [{}])[0].get("delta", {}).get("content") or "" for e in events if e.get("choices")
            )
            n_content = sum(1 for e in events if e.get("choices") and (e["choices"][0].get("delta", {}).get("content") or ""))
            if not done:
                problems.append("stream: no data: [DONE]")
            if text != CONTENT or n_content != N_CHUNKS:
                problems.append(f"stream: {n_content} content chunks, text={text[:60]!r}")
            if not any(e.get("usage") for e in events):
                problems.append("stream: no usage chunk although include_usage was asked")
            if any(e.get("model") != MODEL for e in events):
                problems.append("stream: a chunk's model is not the public name")
            if "text/event-stream" not in h.get("content-type", ""):
                problems.append(f"stream: content-type={h.get('content-type')!r}")
    except Exception as e:
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        await c.close()
    return problems
