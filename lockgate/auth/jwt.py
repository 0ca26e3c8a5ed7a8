"""JWTs from an identity provider: HS256 with a shared secret, or RS/ES keys from a JWKS URL.

Checks signature, `exp` (required), `nbf`, `iss` and `aud` when configured, and
maps claims to a Principal as `auth.jwt.claims` says. The JWKS is fetched
without blocking the event loop (aiohttp), cached for `jwks_cache_ttl_s`, and
refetched when a token names an unknown `kid` — at most once per
`jwks_min_refetch_interval_s`, so forged kids cannot turn us into a flood
against the identity provider.

The algorithm is never taken on trust from the token: HS256 is accepted only
with the shared secret, asymmetric algorithms only with a JWKS key of the
matching type, and `none` never.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import structlog
from jwt import PyJWK

from lockgate.auth.principal import Principal
from lockgate.config import JWTConfig
from lockgate.errors import AuthenticationFailed

log = structlog.get_logger("lockgate.auth.jwt")

ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
_TRUE = {"true", "1", "yes"}


@dataclass(frozen=True, slots=True)
class SigningKey:
    kty: str  # RSA | EC
    alg: str | None  # the algorithm the JWK declares, if any
    key: Any  # a cryptography public key

    def fits(self, alg: str) -> bool:
        # A key that names its algorithm is used with that one only.
        return (self.alg is None or self.alg == alg) and self.kty == _KEY_TYPE.get(alg[:2])


class JWKSCache:
    """Signing keys by `kid` from a JWKS URL."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 300.0,
        min_refetch_interval_s: float = 10.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.min_refetch_interval_s = min_refetch_interval_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._keys: dict[str | None, SigningKey] = {}
        self._fetched_at = -math.inf  # last successful fetch
        self._tried_at = -math.inf  # last attempt, successful or not
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0

    async def get(self, kid: str | None) -> SigningKey | None:
        now = self._clock()
        key = self._lookup(kid)
        fresh = now - self._fetched_at < self.ttl_s
        if key is not None and fresh:
            return key
        if now - self._tried_at < self.min_refetch_interval_s:
            return key  # refetched a moment ago: an unknown kid stays unknown for now
        async with self._lock:
            if self._tried_at <= now:  # nobody fetched while we waited for the lock
                await self._fetch()
        return self._lookup(kid)

    def _lookup(self, kid: str | None) -> SigningKey | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._tried_at = self._clock()
        self.fetches += 1
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(self.url, headers={"accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                body = await resp.json(content_type=None)
        except Exception as err:
            # Keep the keys we have: a flaky identity provider must not log everyone out.
            log.warning("jwks_fetch_failed", url=self.url, error=str(err) or type(err).__name__)
            return
        keys: dict[str | None, SigningKey] = {}
        for data in body.get("keys", []) if isinstance(body, dict) else []:
            if not isinstance(data, dict) or data.get("use", "sig") != "sig" or data.get("kty") not in ("RSA", "EC"):
                continue
            try:
                keys[data.get("kid")] = SigningKey(data["kty"], data.get("alg"), PyJWK(data).key)
            except Exception:
                log.warning("jwks_key_skipped", kid=data.get("kid"), kty=data.get("kty"))
        self._keys = keys
        self._fetched_at = self._tried_at
        log.info("jwks_fetched", url=self.url, kids=sorted(str(k) for k in keys))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _claim(claims: dict[str, Any], path: str | None) -> Any:
    """A claim by name, or by dotted path into nested objects (e.g. `realm_access.roles`)."""
    if not path:
        return None
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return []


class JWTVerifier:
    def __init__(self, config: JWTConfig, jwks: JWKSCache | None = None) -> None:
        self.config = config
        self._secret = config.hs256_secret.get_secret_value().encode() if config.hs256_secret else None
        self.jwks = jwks
        if self.jwks is None and config.jwks_url:
            self.jwks = JWKSCache(
                config.jwks_url,
                ttl_s=config.jwks_cache_ttl_s,
                min_refetch_interval_s=config.jwks_min_refetch_interval_s,
            )
        self._options: dict[str, Any] = {
            "require": ["exp"],
            "verify_aud": config.audience is not None,
            "verify_iss": config.issuer is not None,
        }

    async def authenticate(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationFailed("Invalid token.") from None
        alg = header.get("alg")
        if alg == "HS256" and self._secret is not None:
            key: Any = self._secret
        elif alg in ASYMMETRIC and self.jwks is not None:
            jwk = await self.jwks.get(header.get("kid") if isinstance(header.get("kid"), str) else None)
            if jwk is None or not jwk.fits(alg):
                raise AuthenticationFailed("Invalid token: unknown signing key.")
            key = jwk.key
        else:
            raise AuthenticationFailed("Invalid token: signing algorithm not accepted.")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_s,
                options=self._options,  # type: ignore[arg-type]  # PyJWT types it as a TypedDict
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationFailed("The token is not valid yet.") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
            raise AuthenticationFailed("The token was not issued for this gateway.") from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("Invalid token.") from None
        return self.principal(claims)

    def principal(self, claims: dict[str, Any]) -> Principal:
        names = self.config.claims
        user = _claim(claims, names.user)
        if not isinstance(user, (str, int)) or user == "":
            raise AuthenticationFailed(f"Invalid token: the `{names.user}` claim is missing.")
        team = _claim(claims, names.team)
        models = _strings(_claim(claims, names.models)) if names.models else []
        return Principal(
            key_id=f"jwt:{user}",
            user=str(user),
            team=str(team) if isinstance(team, (str, int)) else None,
            models=frozenset(models) if models else None,
            is_admin=self._is_admin(claims),
        )

    def _is_admin(self, claims: dict[str, Any]) -> bool:
        """Admin when the `admin_role` claim is true, or when a `roles`/`groups` claim lists that role."""
        role = self.config.claims.admin_role
        if not role:
            return False
        value = _claim(claims, role)
        if value is True or (isinstance(value, str) and value.lower() in _TRUE):
            return True
        return any(role in _strings(claims.get(c)) for c in ("roles", "groups"))

    async def aclose(self) -> None:
        if self.jwks is not None:
            await self.jwks.aclose()
