"""The console's router: the static files, the role dependencies, and every page module's routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.responses import Response

from lockgate.config import Config
from lockgate.console import assets
from lockgate.console.sessions import Session
from lockgate.console.throttle import LoginThrottle
from lockgate.console.web import Console, Forbidden, console_route_class, current_session, make_templates

Dep = Callable[[Request], Awaitable[Session]]


def build_router(config: Config) -> APIRouter:
    console = Console(config, make_templates(), assets.load())
    throttle = LoginThrottle(config.ui.login_failures_per_user, config.ui.login_failures_per_address)
    router = APIRouter(prefix=config.ui.path, route_class=console_route_class(console), include_in_schema=False)

    async def viewer(request: Request) -> Session:
        """Any signed-in role (pages are reads)."""
        return await current_session(console, request)

    async def admin(request: Request) -> Session:
        """An admin; a viewer's attempt is refused (403) and audited."""
        session = await current_session(console, request)
        if not session.is_admin:
            from lockgate.console.web import actor

            await console.audit(request).record(
                actor(request, session), "refused", target_type="route", target_id=request.url.path, outcome="refused"
            )
            raise Forbidden()
        return session

    @router.get("/static/{name:path}")
    async def static(name: str, request: Request) -> Response:
        asset = console.assets.get(name)
        if asset is None:
            return console.message(request, 404, "Not found", "No such file.")
        request.state.console_cacheable = True
        headers = {"cache-control": assets.CACHE_FOREVER, "etag": f'"{asset.etag}"'}
        if request.headers.get("if-none-match") == f'"{asset.etag}"':
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    from lockgate.console import routes_auth, routes_keys, routes_pages, routes_teams, routes_users

    routes_auth.add(router, console, throttle, viewer)
    routes_pages.add(router, console, viewer)
    routes_keys.add(router, console, viewer, admin)
    routes_teams.add(router, console, viewer, admin)
    routes_users.add(router, console, viewer, admin)

    @router.api_route("/{rest:path}", methods=["GET", "POST"])
    async def unknown(rest: str, request: Request) -> Response:
        return console.message(request, 404, "Not found", "There is no console page here.")

    return router
