"""The HTTP usage sink: every usage record also POSTed, in JSON batches, to a receiver of your choice.

It is the SQL usage sink's machinery (usage/sink.py: memory buffer, durable
spool, back-off, replay, flush on SIGTERM) with a different writer, so it is an
accounting path too: a receiver that is down or slow costs no record, they are
spooled and replayed. The writer POSTs one batch as::

    {"records": [<row>, ...]}     rows with exactly the usage_records columns
                                  (started_at as "YYYY-MM-DD HH:MM:SS.ffffff", UTC)

with ``Idempotency-Key`` (a digest of the batch's request ids) and any configured
headers. A 2xx answer means the receiver has it; anything else (an error status,
a refused connection, a timeout) fails the write and the batch is spooled.
Deliveries are at least once: a batch whose answer was lost is sent again, so
a receiver must store by ``request_id`` (a primary key, insert-or-ignore), which
makes the effect exactly once. The Cloudflare Worker in deploy/cloudflare is one
such receiver (D1), see docs/cloudflare.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import orjson
import structlog

from lockgate.config import HttpSinkConfig
from lockgate.usage.rows import Row, utc_datetime
from lockgate.usage.sink import UsageSink

log = structlog.get_logger("lockgate.usage.http")

# The text SQLite (and D1) store a timestamp as; Lockgate's own SQLite store writes the same.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def wire_row(row: Row) -> Row:
    """A spooled row as the receiver gets it: the same columns, the timestamp as UTC text."""
    return {**row, "started_at": utc_datetime(row["started_at"]).strftime(TIMESTAMP_FORMAT)}


def idempotency_key(rows: list[Row]) -> str:
    """The same batch always gets the same key (a replay after a lost answer is recognisable)."""
    digest = hashlib.sha256()
    for request_id in sorted(str(r["request_id"]) for r in rows):
        digest.update(request_id.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


class ReceiverRefused(Exception):
    """The receiver answered, but not with a 2xx: the batch is not taken."""

    def __init__(self, status: int) -> None:
        super().__init__(f"usage receiver answered {status}")
        self.status = status


class HttpWriter:
    """One POST per batch; raises when the receiver did not take it (the sink then spools it)."""

    def __init__(self, url: str, headers: dict[str, str], timeout_s: float) -> None:
        self.url = url
        # Its own client: the usage path does not share a pool with upstream traffic.
        self.client = httpx.AsyncClient(
            headers={"content-type": "application/json", "user-agent": "lockgate-usage", **headers},
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
        )

    async def write(self, rows: list[Row]) -> int:
        if not rows:
            return 0
        body = orjson.dumps({"records": [wire_row(r) for r in rows]})
        response = await self.client.post(self.url, content=body, headers={"idempotency-key": idempotency_key(rows)})
        await response.aclose()
        if not 200 <= response.status_code < 300:
            raise ReceiverRefused(response.status_code)
        return len(rows)

    async def aclose(self) -> None:
        await self.client.aclose()


class HttpUsageSink(UsageSink):
    """The UsageSink over an HttpWriter; closes its HTTP client after the last flush."""

    name = "usage-http"

    def __init__(self, writer: HttpWriter, spool_dir: str | Path, **kwargs: Any) -> None:
        super().__init__(writer.write, spool_dir, **kwargs)
        self.writer = writer

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.writer.aclose()


def build_http_sink(config: HttpSinkConfig, default_spool_dir: str) -> HttpUsageSink:
    headers = {name: value.get_secret_value() for name, value in config.headers.items()}
    writer = HttpWriter(config.url, headers, config.timeout_s)
    # A directory of its own: a spool adopts every orphan file in its directory, and these
    # batches must go to the receiver, not to the database.
    spool_dir = config.spool_dir or str(Path(default_spool_dir) / "http")
    return HttpUsageSink(
        writer,
        spool_dir,
        batch_size=config.batch_size,
        flush_interval_s=config.flush_interval_s,
        # The sink's own wait is a little longer than httpx's: the request's timeout decides.
        write_timeout_s=config.timeout_s + 1.0,
        retry_max_s=config.retry_max_s,
        max_buffer=config.max_buffered,
    )
