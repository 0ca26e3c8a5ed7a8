"""Request dependencies every route shares: the client's address, the caller, the admin check.

Routes take them with ``Depends``; a refusal raises a GatewayError that the
app's exception handler renders (errors.render), like every other error.
"""

from __future__ import annotations

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lockgate.auth import Principal
from lockgate.errors import PermissionDenied

# Documents the bearer scheme in the OpenAPI spec; the check itself is the gateway's authenticator.
_bearer = HTTPBearer(auto_error=False, scheme_name="bearer", description="The master key, a virtual key or a JWT")
_admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="adminBearer", description="The master key, or a JWT with the admin role"
)


def client_address(request: Request) -> str | None:
    """The peer's address (the auth-failure throttle counts by it)."""
    return request.client.host if request.client else None


async def authenticate(request: Request, _credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> Principal:
    """The caller: 401 without valid credentials, 429 after too many failures from its address."""
    principal: Principal = await request.app.state.gateway.pipeline.authenticator.authenticate(
        request.headers, client_address(request)
    )
    return principal


def ensure_admin(principal: Principal, message: str, code: str) -> Principal:
    if not principal.is_admin:
        raise PermissionDenied(message, code=code)
    return principal


async def require_admin(
    request: Request, _credentials: HTTPAuthorizationCredentials | None = Security(_admin_bearer)
) -> Principal:
    """The caller, if an admin: 401 without valid credentials, 403 for anyone else."""
    principal = await authenticate(request)
    return ensure_admin(principal, "This endpoint needs the master key or an admin token.", "admin_required")
