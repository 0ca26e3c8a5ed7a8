"""Listening and request handling: limits on clients, CORS, security headers, the console."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator, model_validator

from lockgate.config.base import _Strict


class CorsConfig(_Strict):
    """Cross-origin access for browser apps (docs/limits.md#cors); absent: no CORS header, preflights 405."""

    # Exact origins ("https://app.example.com"), "*" (any), or a subdomain wildcard ("https://*.example.com").
    allow_origins: list[str] = Field(min_length=1)
    allow_origin_regex: str | None = Field(default=None, description="An origin matching it whole is allowed too")
    allow_methods: list[str] = Field(
        default_factory=lambda: ["GET", "POST", "DELETE", "PATCH"], description="Methods a preflight may allow"
    )
    # "*" echoes what the preflight asks for; names may end in * ("x-stainless-*").
    allow_headers: list[str] = Field(default_factory=lambda: ["*"])
    # Response headers a page's script may read; names may end in * (matched against each response).
    expose_headers: list[str] = Field(default_factory=lambda: ["x-request-id", "x-ratelimit-*", "retry-after", "x-lockgate-*"])
    max_age_s: int = Field(default=600, ge=0, description="How long a browser may cache a preflight's answer")
    allow_credentials: bool = Field(default=False, description="Let pages send cookies and credentials")

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not re.fullmatch(r"[a-z][a-z0-9+.-]*://(\*\.)?[^/*\s]+", origin, re.IGNORECASE):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], no path; '*' or '*.' before the host)")
        return origins

    @field_validator("allow_origin_regex")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"not a regular expression: {err}") from None
        return pattern

    @model_validator(mode="after")
    def _no_credentials_for_everyone(self) -> "CorsConfig":
        # Browsers refuse "*" with credentials; echoing any origin instead would hand every site the caller's cookies.
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials cannot be combined with the wildcard origin '*'; list the origins")
        probe = "https://lockgate-cors-probe.invalid"  # an origin nobody owns: a regex matching it matches anything
        if self.allow_credentials and self.allow_origin_regex and re.fullmatch(self.allow_origin_regex, probe, re.IGNORECASE):
            raise ValueError("allow_credentials cannot be combined with an allow_origin_regex that matches any origin")
        return self


class ServerConfig(_Strict):
    host: str = Field(default="127.0.0.1", description="Address to listen on (`lockgate serve --host` overrides)")
    port: int = Field(default=4000, ge=0, le=65535, description="Port to listen on (`--port` overrides)")
    workers: int = Field(default=1, ge=1, description="Worker processes (`--workers` overrides)")
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest request body accepted; a larger one gets 413"
    )
    # Limits on what a client may send (docs/limits.md), enforced by the HTTP protocol (lockgate/http_server.py).
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="The request line and headers together; past it 431")
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="From a new connection's (or request's) first byte to its last header; past it 408"
    )
    body_timeout_s: float = Field(default=60.0, gt=0, description="From the last header to the body's last byte; past it 408")
    cors: CorsConfig | None = Field(default=None, description="Cross-origin access for browser apps; none when absent")
    hsts_max_age_s: int | None = Field(
        default=None, ge=0, description="Send Strict-Transport-Security with this max-age (behind TLS only)"
    )
    hsts_include_subdomains: bool = Field(default=False, description="Add includeSubDomains to Strict-Transport-Security")
    sse_ping_interval_s: float = Field(
        default=15.0, gt=0, le=60, description="A /v1/messages stream gets a ping after this long without an event"
    )
    sink_queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Slots in each best-effort sink's queue (access log, metrics, PostHog); a full one drops, counted. "
        "Usage records never wait here",
    )


class UIConfig(_Strict):
    """The admin console (lockgate/console/, docs/console.md)."""

    enabled: bool = Field(default=True, description="Serve the admin console")
    path: str = Field(default="/ui", pattern=r"^/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]$", description="Where it is served")
    session_idle_s: float = Field(default=1800.0, gt=0, description="A session unused this long ends")
    session_max_s: float = Field(default=8 * 3600.0, gt=0, description="A session ends this long after login")
    # Failed logins per minute before 429: per user name, and per client address.
    login_failures_per_user: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(
        default=20, ge=1, description="Failed logins per client address per minute before 429"
    )


def is_loopback_host(host: str) -> bool:
    """Whether a host name or address reaches this machine only (the dev key and plain-HTTP cookies are allowed there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
