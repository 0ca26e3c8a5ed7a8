"""Accounting: the usage writer, its HTTP sink, and how long stored Responses are kept."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from lockgate.config.base import _Strict


class HttpSinkConfig(_Strict):
    """Every usage record also POSTed, in JSON batches, to a receiver (usage/http_sink.py, docs/usage.md)."""

    url: str = Field(min_length=1, description="http(s) URL that takes {records: [...]} batches")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Sent with every batch (e.g. Authorization)")
    batch_size: int = Field(default=100, ge=1, le=2000, description="Records per POST")
    flush_interval_s: float = Field(default=1.0, gt=0, description="Longest a record waits before a POST")
    timeout_s: float = Field(default=10.0, gt=0, description="A slower POST is spooled (and later replayed)")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest back-off between failed POSTs")
    spool_dir: str | None = Field(default=None, description="Its own durable spool; <usage.spool_dir>/http when absent")
    max_buffered: int = Field(default=2000, ge=1, description="Records held in memory while the receiver lags; more are spooled")

    @field_validator("url")
    @classmethod
    def _http_scheme(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url


class UsageConfig(_Strict):
    """The usage writer: records go to the database in batches, to a local spool when it is down."""

    enabled: bool = Field(default=True, description="Record every request's usage and cost")
    batch_size: int = Field(default=200, ge=1, le=2000, description="Records per database write")
    flush_interval_s: float = Field(default=1.0, gt=0, description="Longest a record waits before a write")
    write_timeout_s: float = Field(default=5.0, gt=0, description="A slower write is spooled instead")
    spool_dir: str = Field(default="lockgate-spool", description="Durable spool of unwritten batches")
    max_buffered: int = Field(
        default=2000, ge=1, description="Records held in memory while the database lags; more go to the spool (never dropped)"
    )
    http_sink: HttpSinkConfig | None = Field(
        default=None, description="Usage records POSTed to an HTTP endpoint; off when absent"
    )


class ResponsesConfig(_Strict):
    """Stored Responses (`store: true`, the table `responses`): how long they are kept."""

    retention_days: int = Field(
        default=30, ge=0, description="A stored response older than this is deleted by a background purge; 0 keeps them forever"
    )
    purge_interval_s: float = Field(default=3600.0, gt=0, description="How often the purge runs (and once at start-up)")
    purge_batch_size: int = Field(default=500, ge=1, le=10_000, description="Rows deleted per transaction")
