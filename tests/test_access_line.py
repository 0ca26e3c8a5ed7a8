"""The access line written directly equals what structlog's processor chain makes of the same record."""

from __future__ import annotations

import asyncio
import io
import sys
from typing import Any

import orjson
import pytest
import structlog

from lockgate import redaction
from lockgate.records import RequestRecord
from lockgate.telemetry.logging import AccessLogSink, configure_logging

SECRET = "sk-ant-api03-" + "q" * 40


def test_the_direct_access_line_equals_structlogs(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.BytesIO()
    wrapper = io.TextIOWrapper(out)
    monkeypatch.setattr(sys, "stdout", wrapper)
    try:
        direct, chained = _both_lines()(out)
    finally:
        monkeypatch.undo()
        configure_logging("json")  # structlog back on the real stdout for the tests that follow
    assert SECRET not in str(direct) and redaction.MASK in direct["error_message"]
    for line in (direct, chained):
        line.pop("timestamp")
    assert direct == chained
    assert direct["key_id"] is None and "team" not in direct  # core fields always, others only when set


def _both_lines() -> Any:
    configure_logging("json")
    record = RequestRecord(
        request_id="req_1",
        endpoint="chat",
        public_model="gpt-x",
        status=502,
        started_at=1.5,
        latency_ms=3.25,
        user=f"someone pasted {SECRET}",
        error_type="provider_bad_response",
        error_message=f"upstream said: invalid key {SECRET}",
        extra={"route": ["a", f"b {SECRET}"], "n": 3},
    )
    sink = AccessLogSink()
    asyncio.run(sink.handle(record))
    structlog.get_logger("lockgate.access").info("request", **sink._fields(record, None))
    sys.stdout.flush()

    def lines(out: io.BytesIO) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in out.getvalue().strip().splitlines()]

    return lines
