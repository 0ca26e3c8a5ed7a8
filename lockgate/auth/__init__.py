"""Who is asking: the authenticate stage turns credentials into a Principal.

In order: the master key (constant-time compare), then virtual keys (`lg-…`,
from the key cache), then JWTs (HS256 secret or JWKS). A caller in a team with a
record gets that team's budget and limits (from the team cache). Failures are counted
per client address by the brute-force guard, which answers 429 once an address
fails too often.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lockgate.auth.guard import FailureGuard
from lockgate.auth.principal import MASTER, Principal
from lockgate.config import AuthConfig
from lockgate.errors import AuthenticationFailed

if TYPE_CHECKING:
    from lockgate.auth.jwt import JWTVerifier
    from lockgate.auth.keys import VirtualKeys
    from lockgate.auth.teams import Teams
    from lockgate.store import Store

__all__ = ["MASTER", "Authenticator", "Principal", "credential_from"]


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
    """Master key, virtual keys (with a store) and JWTs (with `auth.jwt`), behind one call."""

    def __init__(self, config: AuthConfig, store: "Store | None" = None) -> None:
        secret = config.master_key.get_secret_value() if config.master_key else None
        self._master = secret.encode() if secret else None
        self.guard = FailureGuard(config.max_failures_per_minute)
        self.keys: VirtualKeys | None = None
        self.teams: Teams | None = None
        self.jwt: JWTVerifier | None = None
        if store is not None:
            from lockgate.auth.keys import KeyRepository, VirtualKeys
            from lockgate.auth.teams import TeamRepository, Teams

            self.keys = VirtualKeys(KeyRepository(store), config.key_cache_ttl_s)
            self.teams = Teams(TeamRepository(store), config.key_cache_ttl_s)
        if config.jwt is not None:
            from lockgate.auth.jwt import JWTVerifier

            self.jwt = JWTVerifier(config.jwt)

    async def authenticate(self, headers: Mapping[str, str], client: str | None) -> Principal:
        self.guard.check(client)
        token = credential_from(headers)
        if not token:
            raise AuthenticationFailed("You didn't provide an API key. Send it in an Authorization header as 'Bearer YOUR_KEY'.")
        try:
            principal = await self._identify(token)
        except AuthenticationFailed:
            self.guard.failed(client)
            raise
        if principal.team is not None and self.teams is not None:
            return await self.teams.attach(principal)
        return principal

    async def _identify(self, token: str) -> Principal:
        if self._master is not None and hmac.compare_digest(token.encode(), self._master):
            return MASTER
        if self.keys is not None and token.startswith("lg-"):
            return await self.keys.authenticate(token)
        if self.jwt is not None and token.count(".") == 2:
            return await self.jwt.authenticate(token)
        raise AuthenticationFailed("Incorrect API key provided.")

    async def aclose(self) -> None:
        if self.keys is not None:
            await self.keys.aclose()
        if self.jwt is not None:
            await self.jwt.aclose()
