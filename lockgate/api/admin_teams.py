"""Admin routes for teams under /admin/teams: a team's shared budget and rate limits.

For the master key or a JWT with the admin role, like the key routes (api/admin.py).
A team's id is the team name its keys carry (`team` on a key, or a JWT's team
claim). Changes apply at once on this replica (its team cache is dropped) and
within `auth.key_cache_ttl_s` on the others.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response

from lockgate.api import spec_examples as ex
from lockgate.api.admin import BUDGET_NEEDED_ON_CREATE, BUDGET_NEEDED_ON_UPDATE, BudgetPeriod, _json, settle_budget_change
from lockgate.api.admin_audit import audit_actor, audit_log
from lockgate.api.deps import require_admin
from lockgate.api.fields import INT32_MAX, Limit, Money
from lockgate.api.openapi import ADMIN_ERRORS, errors, ok
from lockgate.auth import Principal
from lockgate.auth.teams import TEAM_ID, TeamExists, TeamRow, Teams
from lockgate.errors import Conflict, NotFound, NotImplementedHere

router = APIRouter(prefix="/admin", tags=["Admin"], dependencies=[Depends(require_admin)], responses=errors(*ADMIN_ERRORS))


class _TeamFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_budget_usd: Money | None = Field(default=None, description="Spend limit per budget period, shared by the team's keys")
    budget_period: BudgetPeriod | None = Field(default=None, description="total when a budget is given without one")
    rpm: Limit | None = Field(default=None, description="Requests per minute, shared by the team's keys")
    tpm: Limit | None = Field(default=None, description="Tokens per minute, shared by the team's keys")
    max_parallel_requests: Limit | None = Field(default=None, description="Requests in flight at once, shared by the team's keys")
    metadata: dict[str, Any] | None = None


class TeamCreate(_TeamFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra=BUDGET_NEEDED_ON_CREATE)

    id: str = Field(
        min_length=1,
        max_length=200,
        pattern=TEAM_ID.pattern,
        description="The team name, as keys carry it in `team` (letters, digits and . _ : @ + -)",
    )

    @model_validator(mode="after")
    def _budget(self) -> "TeamCreate":
        if self.budget_period is not None and self.max_budget_usd is None:
            raise ValueError("budget_period needs max_budget_usd")
        return self


class TeamUpdate(_TeamFields):
    """Only the fields sent are changed; `null` clears one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=BUDGET_NEEDED_ON_UPDATE)


class TeamView(BaseModel):
    object: Literal["team"] = "team"
    id: str
    max_budget_usd: float | None
    budget_period: BudgetPeriod | None
    rpm: int | None
    tpm: int | None
    max_parallel_requests: int | None = None
    metadata: dict[str, Any] | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


class TeamList(BaseModel):
    object: Literal["list"] = "list"
    data: list[TeamView]


def _teams(request: Request) -> Teams:
    teams = request.app.state.gateway.pipeline.authenticator.teams
    if teams is None:
        raise NotImplementedHere("No key store is configured.")
    return teams


def _found(row: TeamRow | None, team: str) -> TeamRow:
    if row is None:
        raise NotFound(f"No team `{team}`.", param="team")
    return row


@router.post(
    "/teams",
    status_code=201,
    response_model=TeamView,
    summary="Create a team",
    openapi_extra={"requestBody": {"content": {"application/json": {"example": ex.TEAM_CREATE}}}},
    responses={**ok(None, ex.TEAM_VIEW, "The team", 201), **errors(400, 409)},
)
async def create_team(body: TeamCreate, request: Request, principal: Principal = Depends(require_admin)) -> Response:
    fields = body.model_dump(exclude={"id"})
    if fields["max_budget_usd"] is not None and fields["budget_period"] is None:
        fields["budget_period"] = "total"
    teams = _teams(request)
    try:
        row = await teams.repo.create(body.id, **fields)
    except TeamExists:
        raise Conflict(
            f"A team `{body.id}` already exists; change it with PATCH /admin/teams/{body.id}.", code="team_exists", param="id"
        ) from None
    teams.invalidate(body.id)  # it may be cached as unknown
    await audit_log(request).record(
        audit_actor(request, principal), "team.create", target_type="team", target_id=body.id, after=row.public()
    )
    return _json(row.public(), 201)


@router.get(
    "/teams",
    response_model=TeamList,
    summary="List teams",
    responses={**ok(None, {"object": "list", "data": [ex.TEAM_VIEW]}), **errors(400)},
)
async def list_teams(
    request: Request,
    limit: int = Query(default=1000, ge=1, le=10_000),
    offset: int = Query(default=0, ge=0, le=INT32_MAX),
) -> Response:
    rows = await _teams(request).repo.list(limit=limit, offset=offset)
    return _json({"object": "list", "data": [r.public() for r in rows]})


@router.get("/teams/{team}", response_model=TeamView, summary="Get a team", responses={**ok(None, ex.TEAM_VIEW), **errors(404)})
async def get_team(team: str, request: Request) -> Response:
    return _json(_found(await _teams(request).repo.get(team), team).public())


@router.patch(
    "/teams/{team}",
    response_model=TeamView,
    summary="Change a team's budget or limits",
    openapi_extra={"requestBody": {"content": {"application/json": {"example": {"max_budget_usd": 800.0}}}}},
    responses={**ok(None, ex.TEAM_VIEW), **errors(400, 404, 409)},
)
async def update_team(team: str, body: TeamUpdate, request: Request, principal: Principal = Depends(require_admin)) -> Response:
    changes = body.model_dump(exclude_unset=True)
    teams = _teams(request)
    current = _found(await teams.repo.get(team), team)
    settle_budget_change(changes, current.max_budget_usd, current.budget_period)
    row = _found(await teams.repo.update(team, **changes), team)
    teams.invalidate(team)
    await audit_log(request).record(
        audit_actor(request, principal),
        "team.update",
        target_type="team",
        target_id=team,
        before=current.public(),
        after=row.public(),
    )
    return _json(row.public())


@router.delete(
    "/teams/{team}",
    response_model=TeamView,
    summary="Delete a team's record",
    responses={**ok(None, ex.TEAM_VIEW), **errors(404)},
)
async def delete_team(team: str, request: Request, principal: Principal = Depends(require_admin)) -> Response:
    """Its keys stay and keep their `team`; they lose the team's budget and limits (config limits still apply)."""
    teams = _teams(request)
    row = _found(await teams.repo.delete(team), team)
    teams.invalidate(team)
    await audit_log(request).record(
        audit_actor(request, principal), "team.delete", target_type="team", target_id=team, before=row.public()
    )
    return _json(row.public())
