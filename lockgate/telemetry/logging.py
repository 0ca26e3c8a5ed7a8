"""Structured logs (structlog): JSON by default, one access line per request.

Secrets are kept out by construction: records carry no keys, and nothing logs
request headers. Redaction is the second line of defence: a processor masks
every configured secret (by value, see lockgate/redaction.py) and key-shaped
text in every string of every event, the formatted exception included, and a
log-record factory does the same for the stdlib loggers (uvicorn's, the
libraries').
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import sys
import traceback
from collections.abc import Callable
from dataclasses import fields as dataclass_fields
from typing import Any

import orjson
import structlog

from lockgate import redaction
from lockgate.errors import redact
from lockgate.records import RequestRecord

__all__ = ["AccessLogSink", "configure_logging", "redact", "redact_event"]


# Where the access line goes when logs are JSON (set by configure_logging; None: through structlog).
_json_out: Any = None
_access_enabled = True


def redact_event(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: every string value, nested ones and the formatted exception included."""
    redactor = redaction.active()  # read per event: the process's redactor is installed at start-up
    cached = redactor.cached
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = cached(value)
        elif isinstance(value, (dict, list, tuple)):
            event[key] = redactor.deep(value)
    return event


def _redacting_record_factory(make: Any) -> Any:
    """Wraps the stdlib log-record factory so message, arguments and traceback are redacted when a record is made.

    Arguments stay arguments (formatters such as uvicorn's unpack them): strings are
    redacted, numbers kept, anything else (an exception, say) replaced by its redacted text.
    """

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = make(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        else:
            record.msg = redact(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redacted_arg(v) for k, v in record.args.items()}
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    factory.lockgate_redacting = True  # type: ignore[attr-defined]
    return factory


def _redacted_arg(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(value if isinstance(value, str) else str(value))


def _redact_stdlib_logs() -> None:
    current = logging.getLogRecordFactory()
    if not getattr(current, "lockgate_redacting", False):
        logging.setLogRecordFactory(_redacting_record_factory(current))


def configure_logging(log_format: str = "json", level: str = "info") -> None:
    """Route structlog (and the stdlib loggers of uvicorn and friends) to stdout in one format."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    # Redaction after the exception is formatted; level and timestamp (ours) are added after it.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
        redact_event,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    global _json_out, _access_enabled
    _access_enabled = numeric <= logging.INFO
    if log_format == "console":
        renderer: Any = structlog.dev.ConsoleRenderer(colors=False)
        factory: Any = structlog.PrintLoggerFactory(sys.stdout)
        _json_out = None
    else:
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        factory = structlog.BytesLoggerFactory(sys.stdout.buffer)
        _json_out = sys.stdout.buffer
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    _redact_stdlib_logs()


# Always on the access line (null when unknown), so log queries can rely on them.
_CORE = (
    "request_id",
    "key_id",
    "user",
    "public_model",
    "deployment",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "ttft_ms",
    "attempts",
    "cost_usd",
)
# Never on the access line: prompts and completions (only PostHog gets them, and only outside privacy mode).
_NEVER = frozenset({"extra", "content"})


class AccessLogSink:
    """Writes one structured line per request record."""

    name = "access_log"

    def __init__(self) -> None:
        self._log = structlog.get_logger("lockgate.access")
        # Read fields one by one (asdict would deep-copy every record).
        self._names = [f.name for f in dataclass_fields(RequestRecord) if f.name not in _NEVER]
        self._values = operator.attrgetter(*self._names)  # all of them in one C call

    async def handle(self, record: RequestRecord) -> None:
        if _json_out is None:
            self._log.info("request", **self._fields(record, None))
            return
        if not _access_enabled:
            return
        # The JSON line structlog's chain would make (same keys, the same redaction of every
        # string), written directly: that chain was most of this sink's cost, once per request.
        fields = self._fields(record, redaction.active().cached)
        fields["event"] = "request"
        fields["level"] = "info"
        fields["timestamp"] = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        _json_out.write(orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE, default=str))

    def _fields(self, record: RequestRecord, redact_str: Callable[[str], str] | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for name, value in zip(self._names, self._values(record), strict=True):
            if value is None:
                if name in _CORE:
                    fields[name] = None
            elif redact_str is not None and value.__class__ is str:
                fields[name] = redact_str(value)
            else:
                fields[name] = value
        if record.extra:
            fields.update(redaction.active().deep(record.extra) if redact_str is not None else record.extra)
        return fields

    async def aclose(self) -> None:
        return None
