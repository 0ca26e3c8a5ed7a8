"""The access line written directly equals what structlog's processor chain makes of the same record."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import structlog

from lockgate import redaction
from lockgate.records import RequestRecord
from lockgate.telemetry.logging import AccessLogSink, configure_logging

SECRET = "sk-ant-api03-" + "q" * 40


def test_the_direct_access_line_equals_structlogs(capfd: pytest.CaptureFixture[str]) -> None:
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
    direct, chained = (orjson.loads(line) for line in capfd.readouterr().out.strip().splitlines())
    assert SECRET not in str(direct) and redaction.MASK in direct["error_message"]
    for line in (direct, chained):
        line.pop("timestamp")
    assert direct == chained
    assert direct["key_id"] is None and "team" not in direct  # core fields always, others only when set
