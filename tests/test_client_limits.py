"""What a client may send (docs/limits.md): bounded request headers and slow-client deadlines, enforced by
lockgate/http_server.py under a real `lockgate serve`, driven with raw sockets."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.harness import MASTER_KEY, GatewayProcess

HEADER_CAP = 8192
TIMEOUT_S = 1.0
BODY = b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}'
CHAT_HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + MASTER_KEY.encode() + b"\r\n"
    b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = {
        "auth": {"master_key": MASTER_KEY},
        "models": [{"name": "mock-gpt", "deployments": [{"provider": "mock", "model": "mock-gpt"}]}],
        "server": {"max_header_bytes": HEADER_CAP, "header_timeout_s": TIMEOUT_S, "body_timeout_s": TIMEOUT_S},
    }
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("limits")).start()
    yield gateway
    gateway.stop()


def connect(gw: GatewayProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    return out


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, body


def refused(gw: GatewayProcess, reason: str) -> float:
    for line in httpx.get(gw.base_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(f'lockgate_http_refused_total{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def trickle(sock: socket.socket, data: bytes, every_s: float, until_s: float) -> float:
    """Send ``data`` a byte at a time until the server closes or ``until_s`` passes; the seconds it took."""
    started = time.monotonic()
    for byte in data:
        if time.monotonic() - started > until_s:
            break
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        sock.settimeout(every_s)
        try:
            if sock.recv(1, socket.MSG_PEEK):  # an answer (or the close) came: stop sending
                break
        except TimeoutError:
            pass
        except ConnectionResetError:
            break
    sock.settimeout(10)
    return time.monotonic() - started


@pytest.mark.parametrize("where", ["one-header", "many-headers", "url"])
def test_headers_past_max_header_bytes_are_a_431(gw: GatewayProcess, where: str) -> None:
    before = refused(gw, "header_too_large")
    if where == "one-header":
        head = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 2 * HEADER_CAP + b"\r\n\r\n"
    elif where == "many-headers":
        head = (
            b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n"
            + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(200))
            + b"\r\n"
        )
    else:
        head = b"GET /v1/models?q=" + b"a" * 2 * HEADER_CAP + b" HTTP/1.1\r\nHost: gw\r\n\r\n"
    with connect(gw) as sock:
        sock.sendall(head)
        status, headers, body = parse(read_all(sock))
    assert status == 431
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "request_headers_too_large"
    assert headers["x-content-type-options"] == "nosniff" and "server" not in headers
    assert refused(gw, "header_too_large") == before + 1


def test_a_header_that_never_ends_is_refused_once_past_the_limit(gw: GatewayProcess) -> None:
    # No end of line: refused as soon as the bytes pass the cap, without waiting for a header that never ends.
    with connect(gw) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Big: ")
        started = time.monotonic()
        try:
            for _ in range(64):
                sock.sendall(b"a" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = parse(read_all(sock))
        assert time.monotonic() - started < TIMEOUT_S  # the size, not the header deadline, ended it
    assert status == 431 and json.loads(body)["error"]["code"] == "request_headers_too_large"


def test_headers_and_body_in_one_read_are_measured_exactly(gw: GatewayProcess) -> None:
    # A big body in the same packet as small headers: the body's bytes do not count as headers.
    body = b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "' + b"x" * 3 * HEADER_CAP + b'"}]}'
    head = CHAT_HEAD.replace(str(len(BODY)).encode(), str(len(body)).encode())
    with connect(gw) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        status, _, answer = parse(read_all(sock))
    assert status == 200, answer
    assert json.loads(answer)["object"] == "chat.completion"


def test_headers_under_the_limit_pass(gw: GatewayProcess) -> None:
    r = httpx.get(gw.base_url + "/v1/models", headers={"Authorization": f"Bearer {MASTER_KEY}", "X-Pad": "p" * 6000})
    assert r.status_code == 200


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/admin/keys"])  # the fast path and a FastAPI route
def test_a_body_sent_one_byte_at_a_time_is_cut_at_body_timeout_s(gw: GatewayProcess, path: str) -> None:
    before = refused(gw, "body_timeout")
    with connect(gw) as sock:
        sock.sendall(CHAT_HEAD.replace(b"/v1/chat/completions", path.encode()))
        took = trickle(sock, BODY, every_s=0.25, until_s=10)  # the whole body would take ~18 s
        status, headers, body = parse(read_all(sock))
    assert TIMEOUT_S * 0.9 < took < TIMEOUT_S + 2, took
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert "body_timeout_s (1 s)" in json.loads(body)["error"]["message"]
    assert refused(gw, "body_timeout") == before + 1
    assert "Traceback" not in gw.logs() and "ASGI callable" not in gw.logs()


def test_a_slow_body_on_messages_is_refused_in_anthropics_shape(gw: GatewayProcess) -> None:
    head = b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nx-api-key: " + MASTER_KEY.encode() + b"\r\nContent-Length: 50\r\n\r\n"
    with connect(gw) as sock:
        sock.sendall(head + b"{")  # and then nothing
        status, _, body = parse(read_all(sock))
    assert status == 408
    error = json.loads(body)
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error", error


def test_headers_sent_one_byte_at_a_time_are_cut_at_header_timeout_s(gw: GatewayProcess) -> None:
    before = refused(gw, "header_timeout")
    with connect(gw) as sock:
        took = trickle(sock, b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Slow: " + b"s" * 100 + b"\r\n\r\n", 0.25, 10)
        status, _, body = parse(read_all(sock))
    assert TIMEOUT_S * 0.9 < took < TIMEOUT_S + 2, took
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
    assert refused(gw, "header_timeout") == before + 1


def test_a_connection_that_sends_nothing_is_closed(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        started = time.monotonic()
        assert read_all(sock) == b""  # closed, no answer to a request never made
        assert time.monotonic() - started < TIMEOUT_S + 2


def test_keep_alive_requests_are_not_cut(gw: GatewayProcess) -> None:
    # Several requests on one connection, over longer than the deadlines: each arrived in time.
    with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
        for _ in range(3):
            r = http.post("/v1/chat/completions", content=BODY, headers={"Content-Type": "application/json"})
            assert r.status_code == 200
            time.sleep(TIMEOUT_S * 0.6)


def test_malformed_http_is_a_json_400(gw: GatewayProcess) -> None:
    before = refused(gw, "bad_http")
    with connect(gw) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, body = parse(read_all(sock))
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert refused(gw, "bad_http") == before + 1
