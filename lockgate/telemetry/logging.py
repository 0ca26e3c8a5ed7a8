"""Structured logs (structlog): JSON by default, one access line per request.

Secrets are kept out by construction: records carry no keys, and nothing logs
request headers. The redaction processor is a second line of defence for
values that look like keys or bearer tokens.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import fields as dataclass_fields
from typing import Any

import orjson
import structlog

from lockgate.errors import redact
from lockgate.records import RequestRecord
from lockgate.telemetry.cost import CostTable

def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and ("sk-" in value or "lg-" in value or "Bearer" in value or "eyJ" in value):
            event[key] = redact(value)
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


# Always on the access line (null when unknown), so log queries can rely on them.
_CORE = ("request_id", "key_id", "user", "public_model", "deployment", "status", "prompt_tokens",
         "completion_tokens", "latency_ms", "ttft_ms", "attempts")
# Never on the access line: prompts and completions (only PostHog gets them, and only outside privacy mode).
_NEVER = frozenset({"extra", "content"})


class AccessLogSink:
    """Writes one structured line per request record."""

    name = "access_log"

    def __init__(self, costs: CostTable | None = None) -> None:
        self._log = structlog.get_logger("lockgate.access")
        self._costs = costs or CostTable(None)
        # Read fields one by one (asdict would deep-copy every record).
        self._names = [f.name for f in dataclass_fields(RequestRecord) if f.name not in _NEVER]

    async def handle(self, record: RequestRecord) -> None:
        fields = {}
        for name in self._names:
            value = getattr(record, name)
            if value is not None or name in _CORE:
                fields[name] = value
        fields.update(record.extra)
        if "cost_usd" not in fields:
            cost = self._costs.cost(record)
            fields["cost_usd"] = round(cost.total_usd, 8) if cost else None
        self._log.info("request", **fields)

    async def aclose(self) -> None:
        return None
