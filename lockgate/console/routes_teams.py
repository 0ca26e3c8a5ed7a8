"""The Teams pages: list, one team (its keys, budget, limits, spend by day), create, edit, delete."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from lockgate.api.admin import settle_budget_change
from lockgate.auth.keys import BUDGET_PERIODS
from lockgate.auth.teams import TEAM_ID, TeamExists, Teams
from lockgate.console import forms
from lockgate.console.queries import key_page, team_page
from lockgate.console.sessions import Session
from lockgate.console.web import Console, actor
from lockgate.errors import InvalidRequest, NotFound, NotImplementedHere
from lockgate.usage.queries import report


def _teams(request: Request) -> Teams:
    teams = request.app.state.gateway.pipeline.authenticator.teams
    if teams is None:
        raise NotImplementedHere("No key store is configured.")
    return teams


def _fields(form: dict[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "max_budget_usd": forms.money(form, "max_budget_usd"),
        "budget_period": forms.choice(form, "budget_period", BUDGET_PERIODS),
        "rpm": forms.integer(form, "rpm"),
        "tpm": forms.integer(form, "tpm"),
    }
    if fields["budget_period"] is not None and fields["max_budget_usd"] is None:
        raise forms.FormError("budget_period", "needs a budget")
    return fields


def add(router: APIRouter, console: Console, viewer: Any, admin: Any) -> None:
    @router.get("/teams")
    async def teams_page(request: Request, session: Session = Depends(viewer)) -> Response:
        page = await team_page(console.engine(request), request.query_params.get("after"))
        return console.render(request, "teams.html", page=page, periods=BUDGET_PERIODS, error=None)

    @router.post("/teams")
    async def create_team(request: Request, session: Session = Depends(admin)) -> Response:
        form = await forms.read_form(request)
        name = forms.text(form, "id", required=True) or ""
        if not TEAM_ID.match(name):
            raise forms.FormError("id", "letters, digits and . _ : @ + - only")
        fields = _fields(form)
        if fields["max_budget_usd"] is not None and fields["budget_period"] is None:
            fields["budget_period"] = "total"
        teams = _teams(request)
        try:
            row = await teams.repo.create(name, **fields)
        except TeamExists:
            raise InvalidRequest("A team with that name exists already.", status=409) from None
        teams.invalidate(name)
        await console.audit(request).record(
            actor(request, session), "team.create", target_type="team", target_id=name, after=row.public()
        )
        return RedirectResponse(console.url(request, f"/teams/{name}"), status_code=303)

    @router.get("/teams/{team}")
    async def team_detail(team: str, request: Request, session: Session = Depends(viewer)) -> Response:
        row = await _teams(request).repo.get(team[:200])
        if row is None:
            raise NotFound("No such team.")
        engine = console.engine(request)
        keys = await key_page(engine, team=row.id, after=request.query_params.get("after"))
        end = dt.datetime.now(dt.UTC).date()
        days = await report(engine, "day", end - dt.timedelta(days=29), end, team=row.id)
        return console.render(request, "team.html", team=row, keys=keys, days=days, periods=BUDGET_PERIODS)

    @router.post("/teams/{team}")
    async def update_team(team: str, request: Request, session: Session = Depends(admin)) -> Response:
        teams = _teams(request)
        current = await teams.repo.get(team[:200])
        if current is None:
            raise NotFound("No such team.")
        changes = _fields(await forms.read_form(request))
        settle_budget_change(changes, current.max_budget_usd, current.budget_period)
        row = await teams.repo.update(current.id, **changes)
        teams.invalidate(current.id)
        await console.audit(request).record(
            actor(request, session),
            "team.update",
            target_type="team",
            target_id=current.id,
            before=current.public(),
            after=row.public() if row else None,
        )
        return RedirectResponse(console.url(request, f"/teams/{current.id}"), status_code=303)

    @router.post("/teams/{team}/delete")
    async def delete_team(team: str, request: Request, session: Session = Depends(admin)) -> Response:
        teams = _teams(request)
        row = await teams.repo.delete(team[:200])
        if row is None:
            raise NotFound("No such team.")
        teams.invalidate(row.id)
        await console.audit(request).record(
            actor(request, session), "team.delete", target_type="team", target_id=row.id, before=row.public()
        )
        return RedirectResponse(console.url(request, "/teams"), status_code=303)
