"""Login and logout: the master key, or a console user's name and password.

The same answer for an unknown name and a wrong password; failures are throttled per name and
per address (429 + Retry-After) and audited. A successful login always gets a new session id, and
a session cookie the browser already had is revoked.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from lockgate.api.deps import client_address
from lockgate.audit import Actor
from lockgate.console.forms import read_form
from lockgate.console.sessions import Session
from lockgate.console.throttle import LoginThrottle
from lockgate.console.web import (
    Console,
    actor,
    check_origin,
    clear_session_cookie,
    cookie_name,
    is_loopback_request,
    safe_next,
    set_session_cookie,
)
from lockgate.errors import TooManyAuthFailures

WRONG = "Wrong user name or password (or master key)."
MASTER_NAME = "(master key)"  # the throttle's name for master-key attempts


def add(router: APIRouter, console: Console, throttle: LoginThrottle, viewer: object) -> None:
    @router.get("/login")
    async def login_page(request: Request) -> Response:
        return console.render(
            request, "login.html", next=safe_next(console, request, request.query_params.get("next")), error=None
        )

    @router.post("/login")
    async def login(request: Request) -> Response:
        check_origin(request)
        form = await read_form(request)
        username = form.get("username", "").strip()[:100]
        password = form.get("password", "")
        target = safe_next(console, request, form.get("next"))
        address = client_address(request)

        def again(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
            response = console.render(request, "login.html", status, next=target, error=error)
            response.headers.update(headers or {})
            return response

        if request.url.scheme != "https" and not is_loopback_request(request):
            return again(400, "The console needs HTTPS (plain http only on loopback): its cookie is Secure.")
        if not password or len(password) > 1000:
            return again(400, WRONG)
        name = username or MASTER_NAME
        audit = console.audit(request)
        try:
            throttle.check(name, address)
        except TooManyAuthFailures as err:
            await audit.record(Actor(name, "console", address), "login_throttled", outcome="refused")
            retry = str(max(1, int((err.retry_after_s or 60) + 0.999)))
            return again(429, "Too many failed logins; try again later.", {"retry-after": retry})
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
        sessions = console.sessions(request)
        old = request.cookies.get(cookie_name(request))
        if old:
            await sessions.revoke(old)  # a new id at every login: a planted or old id never carries over
        await sessions.purge_expired()  # expired rows go here, at the rare write, not on a timer
        session = await sessions.create(subject, role, tag, address, request.headers.get("user-agent"))
        await audit.record(Actor(subject, "console", address), "login", target_type="session", after={"role": role})
        response = RedirectResponse(target, status_code=303)
        set_session_cookie(response, request, session.id, console.config.ui.session_max_s)
        return response

    @router.post("/logout")
    async def logout(request: Request, session: Session = Depends(viewer)) -> Response:  # type: ignore[arg-type]
        await console.sessions(request).revoke(session.id)
        await console.audit(request).record(actor(request, session), "logout", target_type="session")
        response = RedirectResponse(console.url(request, "/login"), status_code=303)
        clear_session_cookie(response, request)
        return response
