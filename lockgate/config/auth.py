"""Credentials: the master key, virtual keys' cache, JWTs and the edge's key events."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from lockgate.config.base import _Strict


class JWTClaims(_Strict):
    user: str = Field(default="sub", description="Claim naming the user")
    team: str | None = Field(default=None, description="Claim naming the team")
    models: str | None = Field(default=None, description="Claim listing the models the token may use")
    admin_role: str | None = Field(default=None, description="Claim that, when true, makes the token an admin")


class JWTConfig(_Strict):
    issuer: str | None = Field(default=None, description="Required `iss` claim, when set")
    audience: str | None = Field(default=None, description="Required `aud` claim, when set")
    jwks_url: str | None = Field(default=None, description="Where the RS256/ES256 public keys are fetched")
    hs256_secret: SecretStr | None = Field(default=None, description="Shared secret for HS256 tokens")
    claims: JWTClaims = Field(default=JWTClaims(), description="Which claims carry the identity")
    leeway_s: float = Field(default=30.0, ge=0, description="Clock skew allowed on exp / nbf")
    jwks_cache_ttl_s: float = Field(default=300.0, gt=0, description="Refresh the JWKS this often")
    # A token with an unknown kid refetches the JWKS, but no more often than this (forged kids can't flood the IdP).
    jwks_min_refetch_interval_s: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _one_key_source(self) -> "JWTConfig":
        if not self.jwks_url and not self.hs256_secret:
            raise ValueError("jwt needs jwks_url or hs256_secret")
        return self


class KeyEventsConfig(_Strict):
    """Key changes POSTed to an edge's key cache (lockgate/edge_keys.py, docs/cloudflare.md)."""

    url: str = Field(min_length=1, description="http(s) URL taking {events: [...]}")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Sent with every POST (e.g. Authorization)")
    timeout_s: float = Field(default=5.0, gt=0, description="Longest wait for one POST")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest back-off between failed POSTs")
    max_queued: int = Field(
        default=10_000, ge=1, description="Events held while the edge is unreachable; more are dropped, logged"
    )


class AuthConfig(_Strict):
    master_key: SecretStr | None = Field(
        default=None, description="The admin key: admin API and inference, compared in constant time"
    )
    key_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a replica may keep using what it read about a key or team"
    )
    jwt: JWTConfig | None = Field(default=None, description="Accept JWTs from your identity provider (docs/keys.md)")
    # Failed authentications per client address per minute before 429.
    max_failures_per_minute: int = Field(default=30, ge=1)
    key_events: KeyEventsConfig | None = Field(
        default=None, description="Key changes POSTed to an edge's key cache; off when absent"
    )
