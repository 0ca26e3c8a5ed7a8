"""The console's web plumbing: the route class (headers, HTML errors), sessions, roles, CSRF, templates.

Every console response, an error page too, carries the security headers: a strict CSP
(`script-src 'self'`, nothing inline, no eval), `frame-ancestors 'none'`, nosniff, no referrer;
pages with data are `Cache-Control: no-store`. Every POST needs a live session, the session's CSRF
token, and a same-origin `Origin` / `Sec-Fetch-Site`; the role is checked on the server for each
route and action.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
import structlog
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, RedirectResponse, Response

from lockgate.api.deps import client_address
from lockgate.audit import Actor, AuditLog
from lockgate.config import Config, is_loopback_host
from lockgate.console.forms import FormError, read_form
from lockgate.console.sessions import Session, Sessions, credential_tag
from lockgate.console.users import Users
from lockgate.errors import GatewayError

log = structlog.get_logger("lockgate.console")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    # nosniff and Referrer-Policy: no-referrer come on every answer from the Front (api/front.py).
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
COOKIE_SECURE = "__Host-lockgate_session"  # __Host-: Secure, Path=/, no Domain: only this origin sets it
COOKIE_LOOPBACK = "lockgate_session"  # plain http on loopback only
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JWT_SUBJECT = "jwt:"  # the subject of a session opened with a JWT: jwt:<the token's user claim>


class LoginRequired(Exception):
    """No live session: back to the login page (then to the page asked for)."""


class Forbidden(Exception):
    """A viewer asked for an admin's action."""


class CrossSite(Exception):
    """A state change without the session's CSRF token or from another origin."""


@dataclass
class Console:
    """What the console's routes share: config, templates, and the stores on the gateway's engine."""

    config: Config
    templates: jinja2.Environment
    assets: dict[str, Any]

    def engine(self, request: Request) -> Any:
        return request.app.state.gateway.store.engine

    def sessions(self, request: Request) -> Sessions:
        ui = self.config.ui
        return Sessions(self.engine(request), ui.session_idle_s, ui.session_max_s)

    def users(self, request: Request) -> Users:
        return Users(self.engine(request))

    def audit(self, request: Request) -> AuditLog:
        return AuditLog(self.engine(request))

    def master_tag(self) -> str | None:
        key = self.config.auth.master_key
        return credential_tag(key.get_secret_value()) if key else None

    def jwt_tag(self) -> str | None:
        """What a JWT session remembers of `auth.jwt`: another issuer or key source ends it (None: JWTs off)."""
        jwt = self.config.auth.jwt
        if jwt is None:
            return None
        source = jwt.jwks_url or credential_tag(jwt.hs256_secret.get_secret_value() if jwt.hs256_secret else "")
        return credential_tag(f"jwt|{jwt.issuer}|{jwt.audience}|{source}")

    def tag_for(self, subject: str) -> str | None:
        """The credential tag a live session of `subject` must carry (None: no such credential any more).

        Subjects: "master", "jwt:<user claim>" (user names cannot hold a colon), or a console user ("").
        """
        if subject == "master":
            return self.master_tag()
        if subject.startswith(JWT_SUBJECT):
            return self.jwt_tag()
        return ""

    # --- URLs ------------------------------------------------------------------------------

    def base(self, request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/") + self.config.ui.path

    def url(self, request: Request, path: str = "") -> str:
        return self.base(request) + path

    def static(self, request: Request, name: str) -> str:
        return f"{self.base(request)}/static/{name}?v={self.assets[name].etag}"

    # --- responses -------------------------------------------------------------------------

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        session: Session | None = getattr(request.state, "console_session", None)
        html = self.templates.get_template(name).render(
            request=request,
            session=session,
            csrf=session.csrf if session else "",
            url=lambda path="": self.url(request, path),
            static=lambda n: self.static(request, n),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def message(self, request: Request, status: int, title: str, text: str, headers: dict[str, str] | None = None) -> Response:
        response = self.render(request, "message.html", status, title=title, text=text)
        response.headers.update(headers or {})
        return response


def apply_headers(response: Response, request: Request, *, cacheable: bool = False) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not cacheable:
        response.headers["cache-control"] = "no-store"
    if request.url.scheme == "https":
        response.headers.setdefault("strict-transport-security", "max-age=31536000")


def console_route_class(console: Console) -> type[APIRoute]:
    """An APIRoute whose handler renders every failure as an HTML page with the console's headers."""

    class ConsoleRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def route(request: Request) -> Response:
                try:
                    response = await handler(request)
                except LoginRequired:
                    response = _to_login(console, request)
                except Forbidden:
                    response = console.message(
                        request, 403, "Not allowed", "Your role (viewer) may look at everything but change nothing."
                    )
                except CrossSite:
                    response = console.message(
                        request,
                        403,
                        "Refused",
                        "This change did not come from a console page of this session; reload the page and try again.",
                    )
                except FormError as err:
                    response = console.message(request, 400, "Invalid input", str(err))
                except RequestValidationError as err:
                    first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid"}
                    where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
                    response = console.message(request, 400, "Invalid input", f"{where}: {first.get('msg')}")
                except GatewayError as err:
                    response = console.message(request, err.status, "Not done", err.message, _retry_after(err))
                except Exception:
                    log.exception("console_error", path=request.url.path)
                    response = console.message(request, 500, "Error", "The console failed to answer; the gateway log says why.")
                cacheable = bool(getattr(request.state, "console_cacheable", False)) and response.status_code == 200
                apply_headers(response, request, cacheable=cacheable)
                return response

            return route

    return ConsoleRoute


def _retry_after(err: GatewayError) -> dict[str, str]:
    if err.retry_after_s is None:
        return {}
    return {"retry-after": str(max(1, int(err.retry_after_s + 0.999)))}


def _to_login(console: Console, request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login = console.url(request, "/login")
    if request.method == "GET":
        login += "?next=" + quote(target, safe="")
    if request.headers.get("hx-request"):  # htmx: make the whole page go to the login
        return Response(status_code=401, headers={"hx-redirect": login})
    if request.method == "GET":
        return RedirectResponse(login, status_code=303)
    return console.message(request, 401, "Session ended", "Your session has ended; log in again.")


def safe_next(console: Console, request: Request, target: str | None) -> str:
    """Where to go after login: a console path of this origin only (never another site)."""
    base = console.base(request)
    if target and target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return console.url(request, "/")


# --- sessions and roles ------------------------------------------------------------------


def is_loopback_request(request: Request) -> bool:
    return is_loopback_host((request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]"))


def secure_cookie(request: Request) -> bool:
    """Secure unless plain http on loopback (the only place a browser would send it back without TLS)."""
    return request.url.scheme == "https" or not is_loopback_request(request)


def cookie_name(request: Request) -> str:
    return COOKIE_SECURE if secure_cookie(request) else COOKIE_LOOPBACK


def set_session_cookie(response: Response, request: Request, session_id: str, max_age_s: float) -> None:
    secure = secure_cookie(request)
    response.set_cookie(
        COOKIE_SECURE if secure else COOKIE_LOOPBACK,
        session_id,
        max_age=int(max_age_s),
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    secure = secure_cookie(request)
    response.delete_cookie(
        COOKIE_SECURE if secure else COOKIE_LOOPBACK, path="/", secure=secure, httponly=True, samesite="strict"
    )


async def current_session(console: Console, request: Request) -> Session:
    """The live session of this request, or LoginRequired; POSTs also pass the CSRF and origin checks."""
    session_id = request.cookies.get(cookie_name(request), "")
    session = await console.sessions(request).lookup(session_id, console.tag_for) if session_id else None
    if session is None:
        raise LoginRequired()
    request.state.console_session = session
    if request.method in UNSAFE:
        check_origin(request)
        form = await read_form(request)
        token = request.headers.get("x-csrf-token") or form.get("csrf", "")
        if not token or not hmac.compare_digest(token.encode(), session.csrf.encode()):
            raise CrossSite()
    return session


def check_origin(request: Request) -> None:
    """Refuse a state change a browser marks as coming from another site.

    Fetch Metadata decides when the browser sends it (a page cannot forge it). Without it, the
    Origin must be ours. Under `Referrer-Policy: no-referrer` browsers send `Origin: null` on form
    posts, so a null Origin passes only with `Sec-Fetch-Site: same-origin`.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site not in ("same-origin", "none"):
            raise CrossSite()
        origin = request.headers.get("origin")
        if origin and origin != "null" and not _our_origin(request, origin):
            raise CrossSite()
        return
    origin = request.headers.get("origin")
    if origin is not None and not _our_origin(request, origin):
        raise CrossSite()


def _our_origin(request: Request, origin: str) -> bool:
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "") and parts.scheme == request.url.scheme


def actor(request: Request, session: Session) -> Actor:
    return Actor(session.subject, "console", client_address(request))


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lockgate.console", "templates"),
        autoescape=True,  # everything a user typed is escaped; no template uses |safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = lambda v: "-" if v is None else f"${float(v):,.4f}"
    env.filters["num"] = lambda v: "-" if v is None else f"{int(v):,}"
    env.filters["ms"] = lambda v: "-" if v is None else f"{float(v):,.0f} ms"
    env.filters["when"] = lambda v: (
        "-" if v is None else (v.strftime("%Y-%m-%d %H:%M:%S") if hasattr(v, "strftime") else str(v)[:19].replace("T", " "))
    )
    return env
