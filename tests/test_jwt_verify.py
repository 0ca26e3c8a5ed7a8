"""JWT verification against a real JWKS server on 127.0.0.1: HS256, RS256, ES256, rotation,
the bounded refetch, claim mapping, and malformed, forged or misdirected tokens."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from lockgate.auth.jwt import JWKSCache, JWTVerifier
from lockgate.config import JWTConfig
from lockgate.errors import AuthenticationFailed
from tests.fakes.jwks_server import AUDIENCE, ISSUER, FakeIdP, SigningKey

SECRET = "hs256-shared-secret-for-tests-0123456789"
CLAIMS = {"user": "sub", "team": "org_id", "models": "lockgate_models", "admin_role": "lockgate_admin"}


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    server = FakeIdP().start()
    yield server
    server.stop()


def verifier(**cfg: Any) -> JWTVerifier:
    base: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "claims": CLAIMS, "leeway_s": 0}
    return JWTVerifier(JWTConfig.model_validate({**base, **cfg}))


def hs256(**claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bob", "exp": now + 60, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, SECRET, algorithm="HS256")


async def test_hs256_claims_map_to_a_principal() -> None:
    v = verifier(hs256_secret=SECRET)
    p = await v.authenticate(hs256(org_id="acme", lockgate_models=["mock-gpt", "gpt-test"]))
    assert (p.user, p.team, p.key_id, p.is_admin) == ("bob", "acme", "jwt:bob", False)
    assert p.allows("mock-gpt") and not p.allows("other")
    assert (await v.authenticate(hs256(lockgate_models="a b"))).models == frozenset({"a", "b"})
    assert (await v.authenticate(hs256())).models is None  # no claim: every model
    assert (await v.authenticate(hs256(lockgate_admin=True))).is_admin
    assert (await v.authenticate(hs256(roles=["reader", "lockgate_admin"]))).is_admin
    assert not (await v.authenticate(hs256(lockgate_admin="no"))).is_admin


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": lambda now: now - 5}, "expired"),  # computed when the test runs, not at collection
        ({"nbf": lambda now: now + 120}, "not valid yet"),
        ({"aud": "someone-else"}, "not issued for this gateway"),
        ({"iss": "https://evil.example/"}, "not issued for this gateway"),
        ({"exp": None}, "Invalid token"),  # exp is required
        ({"sub": None}, "claim is missing"),
    ],
)
async def test_hs256_rejections(claims: dict[str, Any], message: str) -> None:
    now = int(time.time())
    claims = {k: v(now) if callable(v) else v for k, v in claims.items()}
    with pytest.raises(AuthenticationFailed) as err:
        await verifier(hs256_secret=SECRET).authenticate(hs256(**claims))
    assert message in err.value.message


async def test_forged_and_malformed_tokens() -> None:
    v = verifier(hs256_secret=SECRET)
    good = hs256()
    forged = jwt.encode(
        jwt.decode(good, options={"verify_signature": False}), "not-the-secret-but-long-enough-for-hs256!", algorithm="HS256"
    )
    head, body, sig = good.split(".")
    tampered_body = (
        base64.urlsafe_b64encode(
            json.dumps({"sub": "admin", "lockgate_admin": True, "exp": 2**40, "iss": ISSUER, "aud": AUDIENCE}).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    for token in [
        forged,
        f"{head}.{tampered_body}.{sig}",
        f"{none_header}.{body}.",
        "eyJ.not.json",
        "a.b.c",
        good[:-3],
        good + "x",
    ]:
        with pytest.raises(AuthenticationFailed) as err:
            await v.authenticate(token)
        assert token not in err.value.message


async def test_rs256_and_es256_from_jwks(idp: FakeIdP) -> None:
    v = verifier(jwks_url=idp.jwks_url)
    try:
        rsa_key, ec_key = idp.keys
        p = await v.authenticate(idp.token(rsa_key, sub="carol", lockgate_models=["m1"]))
        assert p.user == "carol" and p.models == frozenset({"m1"})
        assert (await v.authenticate(idp.token(ec_key, sub="dave"))).user == "dave"
        assert idp.fetches == 1  # cached
        # Algorithm confusion: an HS256 token naming the RSA key's kid is refused before any key is used.
        confused = jwt.encode(
            {"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
            SECRET,
            algorithm="HS256",
            headers={"kid": rsa_key.kid},
        )
        with pytest.raises(AuthenticationFailed):
            await v.authenticate(confused)
        # A token signed by an RSA key the IdP does not publish, under a published kid.
        stranger = SigningKey.new("RS256")
        with pytest.raises(AuthenticationFailed):
            await v.authenticate(idp.token(stranger, kid=rsa_key.kid))
        # An RS256 token that claims the EC key's kid.
        with pytest.raises(AuthenticationFailed):
            await v.authenticate(idp.token(rsa_key, kid=ec_key.kid))
    finally:
        await v.aclose()


async def test_rotation_refetches_on_unknown_kid_with_a_bounded_rate(idp: FakeIdP) -> None:
    now = [1000.0]
    jwks = JWKSCache(idp.jwks_url, ttl_s=300, min_refetch_interval_s=10, clock=lambda: now[0])
    v = verifier(jwks_url=idp.jwks_url)
    v.jwks = jwks
    try:
        old = idp.keys[0]
        assert (await v.authenticate(idp.token(old))).user == "alice"
        assert idp.fetches == 1
        new = idp.rotate("ES256")
        now[0] += 11  # past the refetch interval
        assert (await v.authenticate(idp.token(new, sub="erin"))).user == "erin"
        assert idp.fetches == 2
        with pytest.raises(AuthenticationFailed):  # the old key is gone from the JWKS
            await v.authenticate(idp.token(old))
        # A flood of unknown kids refetches at most once per interval.
        for i in range(50):
            with pytest.raises(AuthenticationFailed):
                await v.authenticate(idp.token(SigningKey.new("ES256"), kid=f"forged-{i}"))
        assert idp.fetches <= 3
        before = idp.fetches
        now[0] += 11
        with pytest.raises(AuthenticationFailed):
            await v.authenticate(idp.token(new, kid="forged-again"))
        assert idp.fetches == before + 1
    finally:
        await v.aclose()


async def test_jwks_outage_keeps_known_keys(idp: FakeIdP) -> None:
    now = [0.0]
    v = verifier(jwks_url=idp.jwks_url)
    v.jwks = JWKSCache(idp.jwks_url, ttl_s=60, min_refetch_interval_s=1, clock=lambda: now[0])
    try:
        key = idp.keys[0]
        assert (await v.authenticate(idp.token(key))).user == "alice"
        idp.status = 503
        now[0] += 120  # stale: a refresh is due and fails
        assert (await v.authenticate(idp.token(key))).user == "alice"
        assert idp.fetches == 2
    finally:
        await v.aclose()


async def test_unreachable_jwks_is_a_401_not_a_crash() -> None:
    v = verifier(jwks_url="http://127.0.0.1:9/jwks.json")
    try:
        token = jwt.encode(
            {"sub": "x", "exp": int(time.time()) + 60}, SigningKey.new().private, algorithm="RS256", headers={"kid": "k"}
        )
        with pytest.raises(AuthenticationFailed):
            await v.authenticate(token)
    finally:
        await v.aclose()


async def test_hs256_is_refused_when_only_a_jwks_is_configured(idp: FakeIdP) -> None:
    v = verifier(jwks_url=idp.jwks_url)
    try:
        with pytest.raises(AuthenticationFailed) as err:
            await v.authenticate(hs256())
        assert "algorithm" in err.value.message
        assert idp.fetches == 0
    finally:
        await v.aclose()


def _hs256_signed_with(secret: bytes, kid: str) -> str:
    """An HS256 token made by hand (PyJWT refuses PEM secrets), HMAC'd with the given bytes."""
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"sub": "mallory", "lockgate_admin": True, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


async def test_algorithm_confusion_with_a_published_public_key_is_refused(idp: FakeIdP) -> None:
    from cryptography.hazmat.primitives import serialization

    # Both paths configured, so an HS256 token is verified (not refused for its algorithm alone).
    v = verifier(hs256_secret=SECRET, jwks_url=idp.jwks_url)
    try:
        rsa_key = idp.keys[0]
        assert (await v.authenticate(idp.token(rsa_key, sub="carol"))).user == "carol"  # the JWKS path works
        assert (await v.authenticate(hs256())).user == "bob"  # and the HS256 path
        public = rsa_key.private.public_key()
        for secret in (
            public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            json.dumps(rsa_key.jwk()).encode(),
        ):
            with pytest.raises(AuthenticationFailed):
                await v.authenticate(_hs256_signed_with(secret, rsa_key.kid))
    finally:
        await v.aclose()
