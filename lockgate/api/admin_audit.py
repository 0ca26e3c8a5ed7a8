"""GET /admin/audit: the audit log as JSON (newest first, keyset pages), for the master key or an admin JWT.

Also `audit_actor(request, principal)`: how the JSON admin routes name who acted, for their entries.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from lockgate.api.deps import client_address, require_admin
from lockgate.api.http import client_json, json_response
from lockgate.api.openapi import ADMIN_ERRORS, errors, ok
from lockgate.audit import Actor, AuditLog
from lockgate.auth import Principal

router = APIRouter(prefix="/admin", tags=["Admin"])


def audit_log(request: Request) -> AuditLog:
    return AuditLog(request.app.state.gateway.store.engine)


def audit_actor(request: Request, principal: Principal) -> Actor:
    name = principal.key_id if principal.user is None else f"{principal.user} ({principal.key_id})"
    return Actor(name, "api", client_address(request))


AUDIT_EXAMPLE = {
    "object": "list",
    "data": [
        {
            "object": "audit_entry",
            "id": 42,
            "at": "2026-12-02T10:00:00+00:00",
            "actor": "master",
            "via": "api",
            "address": "10.0.0.7",
            "action": "key.revoke",
            "target_type": "key",
            "target_id": "key_3f9a",
            "outcome": "ok",
            "before": {"id": "key_3f9a", "revoked": False},
            "after": {"id": "key_3f9a", "revoked": True},
        }
    ],
    "next_before": None,
}


@router.get(
    "/audit",
    summary="The audit log of admin actions (console, admin API, CLI), newest first",
    responses={**ok(None, AUDIT_EXAMPLE), **errors(400, *ADMIN_ERRORS)},
)
async def list_audit(
    request: Request,
    principal: Principal = Depends(require_admin),
    before: int | None = Query(
        default=None, ge=1, le=2**63 - 1, description="Entries older than this id (the previous page's last)"
    ),
    limit: int = Query(default=100, ge=1, le=1000),
    action: str | None = Query(default=None, max_length=64),
    actor: str | None = Query(default=None, max_length=200),
    target_id: str | None = Query(default=None, max_length=200),
    outcome: str | None = Query(default=None, max_length=16),
) -> Response:
    rows = await audit_log(request).page(
        before_id=before, limit=limit, action=action, actor=actor, target_id=target_id, outcome=outcome
    )
    body: dict[str, Any] = {"object": "list", "data": rows, "next_before": rows[-1]["id"] if len(rows) == limit else None}
    return json_response(client_json(body))  # entries carry key and team metadata as the client sent it
