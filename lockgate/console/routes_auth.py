"""Login and logout: the master key, a console user's name and password, or an admin JWT.

The same answer for an unknown name and a wrong password; failures are throttled per name and
per address (429 + Retry-After) and audited. A successful login always gets a new session id, and
a session cookie the browser already had is revoked.

A JWT (POST /login/jwt, when `auth.jwt` is set) is checked by the gateway's own verifier (the
signature against the JWKS or the HS256 secret, exp, iss, aud) and must carry the admin role
(`auth.jwt.claims.admin_role`). It opens the same opaque server-side session as a password: the
token itself is never stored, nor put in a cookie, and the session ends when the token expires.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from lockgate.api.deps import client_address
from lockgate.audit import Actor
from lockgate.console.forms import read_form
from lockgate.console.sessions import Session
from lockgate.console.throttle import LoginThrottle
from lockgate.console.web import (
    JWT_SUBJECT,
    Console,
    actor,
    check_origin,
    clear_session_cookie,
    cookie_name,
    is_loopback_request,
    safe_next,
    set_session_cookie,
)
from lockgate.errors import AuthenticationFailed, TooManyAuthFailures

WRONG = "Wrong user name or password (or master key)."
MASTER_NAME = "(master key)"  # the throttle's name for master-key attempts
JWT_NAME = "(jwt)"  # the audit's actor for a token that did not verify (its claims are not trusted)
NOT_ADMIN = "This token does not carry the admin role: only admins log in with a token."
MAX_TOKEN = 16 * 1024


def add(router: APIRouter, console: Console, throttle: LoginThrottle, viewer: object) -> None:
    @router.get("/login")
    async def login_page(request: Request) -> Response:
        return console.render(
            request,
            "login.html",
            next=safe_next(console, request, request.query_params.get("next")),
            error=None,
            jwt=console.config.auth.jwt is not None,
        )

    @router.post("/login")
    async def login(request: Request) -> Response:
        check_origin(request)
        form = await read_form(request)
        username = form.get("username", "").strip()[:100]
        password = form.get("password", "")
        target = safe_next(console, request, form.get("next"))
        address = client_address(request)

        again = _again(console, request, target)
        if request.url.scheme != "https" and not is_loopback_request(request):
            return again(400, HTTPS_ONLY)
        if not password or len(password) > 1000:
            return again(400, WRONG)
        name = username or MASTER_NAME
        audit = console.audit(request)
        refused = await _throttled(console, request, throttle, name, name, again)
        if refused is not None:
            return refused
        subject, role, tag = None, None, ""
        if not username:
            master = console.config.auth.master_key
            if master and hmac.compare_digest(password.encode(), master.get_secret_value().encode()):
                subject, role, tag = "master", "admin", console.master_tag() or ""
        else:
            user = await console.users(request).verify(username, password)
            if user is not None:
                subject, role = user.username, user.role
        if subject is None or role is None:
            throttle.failed(name, address)
            known = username and (await console.users(request).get(username)) is not None
            await audit.record(
                Actor(name if (known or not username) else "(unknown user)", "console", address),
                "login_failed",
                outcome="refused",
            )
            return again(401, WRONG)
        return await _open_session(console, request, target, subject, role, tag)

    @router.post("/login/jwt")
    async def login_jwt(request: Request) -> Response:
        check_origin(request)
        form = await read_form(request)
        token = form.get("token", "").strip()
        target = safe_next(console, request, form.get("next"))
        address = client_address(request)
        again = _again(console, request, target)
        verifier = request.app.state.gateway.pipeline.authenticator.jwt
        tag = console.jwt_tag()
        if verifier is None or tag is None:
            return again(404, "Token login is off: set auth.jwt in the config.")
        if request.url.scheme != "https" and not is_loopback_request(request):
            return again(400, HTTPS_ONLY)
        audit = console.audit(request)
        refused = await _throttled(console, request, throttle, None, JWT_NAME, again)
        if refused is not None:
            return refused
        principal, reason = None, "Invalid token."
        if token and len(token) <= MAX_TOKEN:
            try:
                principal = await verifier.authenticate(token)
            except AuthenticationFailed as err:
                reason = err.message
        if principal is None or not principal.is_admin or not principal.user or len(principal.user) > 90:
            throttle.failed(None, address)
            who = f"{JWT_SUBJECT}{principal.user}"[:100] if principal and principal.user else JWT_NAME
            await audit.record(Actor(who, "console", address), "login_failed", target_type="jwt", outcome="refused")
            if principal is None:
                return again(401, reason)
            return again(403, NOT_ADMIN if not principal.is_admin else "The token's user claim is empty or too long.")
        expires = _token_expiry(token)
        return await _open_session(console, request, target, f"{JWT_SUBJECT}{principal.user}", "admin", tag, expires)

    @router.post("/logout")
    async def logout(request: Request, session: Session = Depends(viewer)) -> Response:  # type: ignore[arg-type]
        await console.sessions(request).revoke(session.id)
        await console.audit(request).record(actor(request, session), "logout", target_type="session")
        response = RedirectResponse(console.url(request, "/login"), status_code=303)
        clear_session_cookie(response, request)
        return response


HTTPS_ONLY = "The console needs HTTPS (plain http only on loopback): its cookie is Secure."


def _again(console: Console, request: Request, target: str) -> Callable[..., Response]:
    """The login page again, with an error (and the way back kept)."""

    def again(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
        jwt = console.config.auth.jwt is not None
        response = console.render(request, "login.html", status, next=target, error=error, jwt=jwt)
        response.headers.update(headers or {})
        return response

    return again


async def _throttled(
    console: Console,
    request: Request,
    throttle: LoginThrottle,
    name: str | None,
    who: str,
    again: Callable[..., Response],
) -> Response | None:
    """The 429 page (audited) when this name (None: none counted) or address failed too often; else None."""
    address = client_address(request)
    try:
        throttle.check(name, address)
    except TooManyAuthFailures as err:
        await console.audit(request).record(Actor(who, "console", address), "login_throttled", outcome="refused")
        retry = str(max(1, int((err.retry_after_s or 60) + 0.999)))
        return again(429, "Too many failed logins; try again later.", {"retry-after": retry})
    return None


async def _open_session(
    console: Console,
    request: Request,
    target: str,
    subject: str,
    role: str,
    tag: str,
    not_after: dt.datetime | None = None,
) -> Response:
    """A new session for a login that passed: the old cookie's session revoked, the new id set, audited."""
    address = client_address(request)
    sessions = console.sessions(request)
    old = request.cookies.get(cookie_name(request))
    if old:
        await sessions.revoke(old)  # a new id at every login: a planted or old id never carries over
    await sessions.purge_expired()  # expired rows go here, at the rare write, not on a timer
    session = await sessions.create(subject, role, tag, address, request.headers.get("user-agent"), not_after)
    await console.audit(request).record(Actor(subject, "console", address), "login", target_type="session", after={"role": role})
    response = RedirectResponse(target, status_code=303)
    max_age = console.config.ui.session_max_s
    if not_after is not None:
        max_age = min(max_age, max(1.0, (not_after - dt.datetime.now(dt.UTC)).total_seconds()))
    set_session_cookie(response, request, session.id, max_age)
    return response


def _token_expiry(token: str) -> dt.datetime | None:
    """The `exp` of a token the verifier has just accepted (it requires one)."""
    import jwt

    exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    return dt.datetime.fromtimestamp(float(exp), dt.UTC) if isinstance(exp, (int, float)) else None
