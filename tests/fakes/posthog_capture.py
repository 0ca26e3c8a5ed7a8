"""A capture server on 127.0.0.1 that speaks PostHog's `/batch/` (gzip or not) and OTLP/HTTP.

It keeps every request it receives, so tests can assert exactly what the real
posthog client and the real OTLP exporter sent. ``mode`` injects an outage:
"error" answers 503, "hang" never answers (until the test stops the server).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes  # decompressed

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CaptureServer:
    mode: str = "ok"  # ok | error | hang
    requests: list[Received] = field(default_factory=list)

    def start(self) -> "CaptureServer":
        capture = self
        self._release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if (self.headers.get("content-encoding") or "").lower() == "gzip":
                    raw = gzip.decompress(raw)
                capture.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, raw))
                if capture.mode == "hang":
                    capture._release.wait(30)
                    return
                status, body = (503, b'{"error":"down"}') if capture.mode == "error" else (200, b'{"status":1}')
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    # --- what PostHog received ----------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for req in list(self.requests):
            if req.path.rstrip("/") == "/batch":
                out.extend(req.json()["batch"])
        return out

    def wait_for_events(self, n: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= n:
                return events
            time.sleep(0.05)
        return self.events()

    def otlp_spans(self) -> list[Any]:
        """Every span received over OTLP/HTTP (protobuf), decoded."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        spans = []
        for req in list(self.requests):
            if req.path == "/v1/traces":
                message = ExportTraceServiceRequest()
                message.ParseFromString(req.body)
                for resource in message.resource_spans:
                    for scope in resource.scope_spans:
                        spans.extend(scope.spans)
        return spans
