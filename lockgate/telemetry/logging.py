"""Structured logs (structlog): JSON by default, one access line per request.

Secrets are kept out by construction: records carry no keys, and nothing logs
request headers. The redaction processor is a second line of defence for
values that look like keys or bearer tokens.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import asdict
from typing import Any

import orjson
import structlog

from lockgate.records import RequestRecord

_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|lg-[A-Za-z0-9_\-]{8,}|Bearer\s+\S+|eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)")


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and ("sk-" in value or "lg-" in value or "Bearer" in value or "eyJ" in value):
            event[key] = _SECRET.sub("[redacted]", value)
    return event


def configure_logging(log_format: str = "json", level: str = "info") -> None:
    """Route structlog (and the stdlib loggers of uvicorn and friends) to stdout in one format."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    if log_format == "console":
        renderer: Any = structlog.dev.ConsoleRenderer(colors=False)
        factory: Any = structlog.PrintLoggerFactory(sys.stdout)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        factory = structlog.BytesLoggerFactory(sys.stdout.buffer)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


class AccessLogSink:
    """Writes one structured line per request record."""

    name = "access_log"

    def __init__(self) -> None:
        self._log = structlog.get_logger("lockgate.access")

    async def handle(self, record: RequestRecord) -> None:
        fields = {k: v for k, v in asdict(record).items() if v is not None and k != "extra"}
        fields.update(record.extra)
        self._log.info("request", **fields)

    async def aclose(self) -> None:
        return None
