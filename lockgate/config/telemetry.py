"""Logs, metrics, traces and PostHog analytics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from lockgate.config.base import _Strict


class PostHogConfig(_Strict):
    api_key: SecretStr | None = Field(default=None, description="The project key; analytics are off without one")
    host: str = Field(default="https://us.i.posthog.com", description="The PostHog instance")
    privacy_mode: bool = Field(default=True, description="Send no prompt or completion text")
    # The client's batching: a batch leaves at flush_at events or every flush_interval_s.
    flush_at: int = Field(default=100, ge=1)
    flush_interval_s: float = Field(default=5.0, gt=0, description="A batch leaves at least this often")
    max_queue_size: int = Field(default=10_000, ge=1, description="Events buffered before new ones are dropped")
    gzip: bool = Field(default=True, description="Compress batches")
    max_retries: int = Field(default=3, ge=0, description="Retries of a failed batch")
    timeout_s: float = Field(default=10.0, gt=0, description="Longest wait for one batch upload")
    shutdown_timeout_s: float = Field(default=5.0, ge=0, description="Longest wait to flush at shutdown")


class TelemetryConfig(_Strict):
    log_format: Literal["json", "console"] = Field(default="json", description="json lines, or console for people")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Lowest level logged")
    access_log: bool = Field(default=True, description="One log line per request")
    metrics: bool = Field(default=True, description="Serve Prometheus /metrics")
    otlp_endpoint: str | None = Field(default=None, description="OpenTelemetry collector for traces; no tracing when absent")
