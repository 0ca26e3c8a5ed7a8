"""GET /admin/audit: the audit log as JSON (newest first, keyset pages), for the master key or an admin JWT.

Also `audit_actor(request, principal)`: how the JSON admin routes name who acted, for their entries.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from lockgate.api.deps import client_address, require_admin
from lockgate.api.http import json_response
from lockgate.audit import Actor, AuditLog
from lockgate.auth import Principal

router = APIRouter(prefix="/admin", tags=["Admin"])


def audit_log(request: Request) -> AuditLog:
    return AuditLog(request.app.state.gateway.store.engine)


def audit_actor(request: Request, principal: Principal) -> Actor:
    name = principal.key_id if principal.user is None else f"{principal.user} ({principal.key_id})"
    return Actor(name, "api", client_address(request))


@router.get("/audit", summary="The audit log of admin actions (console, admin API, CLI), newest first")
async def list_audit(
    request: Request,
    principal: Principal = Depends(require_admin),
    before: int | None = Query(default=None, ge=1, description="Entries older than this id (the previous page's last)"),
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
    return json_response(orjson.dumps(body))
