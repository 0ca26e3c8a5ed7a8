"""Who is asking: the authenticate stage turns credentials into a Principal."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Mapping

from lockgate.config import AuthConfig
from lockgate.errors import AuthenticationFailed


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller and what it may do."""

    key_id: str
    user: str | None = None
    team: str | None = None
    models: frozenset[str] | None = None  # None: every model
    is_admin: bool = False
    rpm: int | None = None
    tpm: int | None = None
    max_budget_usd: float | None = None
    budget_period: str | None = None

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models


MASTER = Principal(key_id="master", is_admin=True)


def credential_from(headers: Mapping[str, str]) -> str | None:
    """The caller's token: `Authorization: Bearer …`, or `x-api-key` as Anthropic-style clients send it."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    key = headers.get("x-api-key")
    return key.strip() if key else None


class Authenticator:
    """The master key today; virtual keys and JWTs plug in behind the same call."""

    def __init__(self, config: AuthConfig, store: Any = None) -> None:
        secret = config.master_key.get_secret_value() if config.master_key else None
        self._master = secret.encode() if secret else None

    async def authenticate(self, headers: Mapping[str, str], client: str | None) -> Principal:
        token = credential_from(headers)
        if not token:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it in an Authorization header as 'Bearer YOUR_KEY'."
            )
        if self._master is not None and hmac.compare_digest(token.encode(), self._master):
            return MASTER
        raise AuthenticationFailed("Incorrect API key provided.")

    async def aclose(self) -> None:
        return None
