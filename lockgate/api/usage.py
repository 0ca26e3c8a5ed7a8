"""Usage reports: GET /admin/usage (admins, any grouping) and GET /v1/usage (a key's own figures)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from lockgate.api import spec_examples as ex
from lockgate.api import spec_models as sm
from lockgate.api.deps import authenticate, ensure_admin
from lockgate.api.http import json_response
from lockgate.api.openapi import ADMIN, AUTH_ERRORS, errors, ok, query
from lockgate.auth import Principal
from lockgate.errors import InvalidRequest
from lockgate.usage.queries import DEFAULT_DAYS, GROUPS, parse_day, report

router = APIRouter(tags=["Usage"])


def _range(request: Request) -> tuple[dt.date, dt.date]:
    q = request.query_params
    today = dt.datetime.now(dt.UTC).date()
    try:
        end = parse_day(q["end"]) if "end" in q else today
        start = parse_day(q["start"]) if "start" in q else end - dt.timedelta(days=DEFAULT_DAYS - 1)
    except ValueError:
        raise InvalidRequest(
            "start and end must be dates (2026-11-20) or RFC 3339 timestamps (2026-11-20T10:00:00Z).", param="start"
        ) from None
    return start, end  # a start after the end is an empty range: an empty report, as the spec allows


def _group_by(request: Request, allowed: tuple[str, ...]) -> str:
    group_by = request.query_params.get("group_by", allowed[0])
    if group_by not in allowed:
        raise InvalidRequest(f"group_by must be one of: {', '.join(allowed)}.", param="group_by")
    return group_by


async def _answer(request: Request, group_by: str, key_id: str | None) -> Response:
    start, end = _range(request)
    rows = await report(request.app.state.gateway.store.engine, group_by, start, end, key_id=key_id)
    body: dict[str, Any] = {
        "object": "list",
        "group_by": group_by,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "data": rows,
    }
    return json_response(orjson.dumps(body))


def _params(groups: tuple[str, ...]) -> dict[str, Any]:
    day = {
        "type": "string",
        "anyOf": [{"format": "date"}, {"format": "date-time"}],
        "description": "A date (2026-11-20) or an RFC 3339 timestamp (2026-11-20T10:00:00Z; UTC when the offset is left off)",
    }
    return {
        "parameters": [
            query("start", f"First day, UTC (default: {DEFAULT_DAYS - 1} days before end)", day),
            query("end", "Last day, UTC (default: today)", day),
            query("group_by", f"Grouping (default {groups[0]})", {"type": "string", "enum": list(groups)}),
        ]
    }


@router.get(
    "/admin/usage",
    summary="Usage and spend by key, model, team or day (admins)",
    responses={**ok(sm.UsageReport, ex.USAGE_REPORT), **errors(400, 403, *AUTH_ERRORS)},
    openapi_extra={**_params(tuple(GROUPS)), "security": ADMIN},
)
async def admin_usage(request: Request, principal: Principal = Depends(authenticate)) -> Response:
    ensure_admin(principal, "Usage reports for all keys need the master key or an admin token.", "forbidden")
    return await _answer(request, _group_by(request, tuple(GROUPS)), None)


@router.get(
    "/v1/usage",
    summary="This key's own usage and spend, by day or model",
    responses={**ok(sm.UsageReport, ex.USAGE_REPORT), **errors(400, *AUTH_ERRORS)},
    openapi_extra=_params(("day", "model")),
)
async def own_usage(request: Request, principal: Principal = Depends(authenticate)) -> Response:
    return await _answer(request, _group_by(request, ("day", "model")), principal.key_id)
