"""The Teams pages: list, one team (its keys, budget, limits, spend by day), create, edit, delete."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from lockgate.auth.keys import BUDGET_PERIODS
from lockgate.auth.teams import TEAM_ID, TeamExists, Teams
from lockgate.console import changes, forms
from lockgate.console.queries import key_page, team_page
from lockgate.console.sessions import Session
from lockgate.console.web import Console
from lockgate.errors import InvalidRequest, NotFound
from lockgate.usage.queries import report


def _teams(request: Request) -> Teams:
    teams: Teams = changes.store(request, "teams")
    return teams


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
        fields = changes.new_budget(changes.limit_fields(form))
        teams = _teams(request)
        try:
            row = await teams.repo.create(name, **fields)
        except TeamExists:
            raise InvalidRequest("A team with that name exists already.", status=409) from None
        teams.invalidate(name)
        await changes.audit(console, request, session, "team.create", name, after=row)
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
        fields = changes.limit_fields(await forms.read_form(request))
        await changes.update(console, request, session, teams, "team", current, fields)
        return RedirectResponse(console.url(request, f"/teams/{current.id}"), status_code=303)

    @router.post("/teams/{team}/delete")
    async def delete_team(team: str, request: Request, session: Session = Depends(admin)) -> Response:
        teams = _teams(request)
        row = await teams.repo.delete(team[:200])
        if row is None:
            raise NotFound("No such team.")
        await changes.changed(console, request, session, teams, "team.delete", row)
        return RedirectResponse(console.url(request, "/teams"), status_code=303)
