"""The Keys pages: list (keyset, search, filters), create, edit, rotate and revoke (with a confirmation).

A plaintext key appears in exactly one answer: the page right after create or rotate (no-store,
like every console page); lists and details show the prefix and the last four characters only.
Every change is audited with a before/after of the key's public fields and drops the key from
this replica's cache at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from lockgate.auth.keys import BUDGET_PERIODS, KeyRepository, KeyRow
from lockgate.console import changes, forms
from lockgate.console.queries import KEY_STATUSES, key_page
from lockgate.console.sessions import Session
from lockgate.console.web import Console
from lockgate.errors import InvalidRequest, NotFound

DONE = {"revoked": "The key is revoked: the gateway refuses it.", "saved": "Saved."}


def _keys(request: Request) -> Any:
    return changes.store(request, "keys")


def _fields(form: dict[str, str]) -> dict[str, Any]:
    """The editable fields from the key form (an empty field clears its value)."""
    return {
        "name": forms.text(form, "name", required=True),
        "user": forms.text(form, "user"),
        "team": forms.text(form, "team"),
        "models": forms.words(form, "models"),
        **changes.limit_fields(form),
        "expires_at": forms.when(form, "expires_at"),
    }


async def _found(repo: KeyRepository, key_id: str) -> KeyRow:
    row = await repo.get(key_id[:64])
    if row is None:
        raise NotFound("No such key.")
    return row


def add(router: APIRouter, console: Console, viewer: Any, admin: Any) -> None:
    @router.get("/keys")
    async def keys_page(request: Request, session: Session = Depends(viewer)) -> Response:
        q = request.query_params
        status = q.get("status") or None
        if status is not None and status not in KEY_STATUSES:
            raise forms.FormError("status", f"one of {', '.join(KEY_STATUSES)}")
        search = (q.get("q") or "").strip()[:200] or None
        team = (q.get("team") or "").strip()[:200] or None
        page = await key_page(console.engine(request), q=search, status=status, team=team, after=q.get("after"))
        return console.render(
            request, "keys.html", page=page, q=search or "", status=status or "", team=team or "", statuses=KEY_STATUSES
        )

    @router.get("/keys/new")
    async def new_key(request: Request, session: Session = Depends(admin)) -> Response:
        return console.render(request, "key_form.html", key=None, periods=BUDGET_PERIODS, error=None)

    @router.post("/keys")
    async def create_key(request: Request, session: Session = Depends(admin)) -> Response:
        form = await forms.read_form(request)
        try:
            fields = _fields(form)
        except forms.FormError as err:
            return console.render(request, "key_form.html", 400, key=None, periods=BUDGET_PERIODS, error=str(err), form=form)
        row, token = await _keys(request).repo.create(**changes.new_budget(fields))
        await changes.audit(console, request, session, "key.create", row.id, after=row)
        return console.render(request, "key_created.html", key=row, token=token, rotated=False)

    @router.get("/keys/{key_id}")
    async def key_detail(key_id: str, request: Request, session: Session = Depends(viewer)) -> Response:
        row = await _found(_keys(request).repo, key_id)
        done = DONE.get(request.query_params.get("done", ""))
        return console.render(request, "key.html", key=row, periods=BUDGET_PERIODS, done=done, error=None)

    @router.post("/keys/{key_id}")
    async def update_key(key_id: str, request: Request, session: Session = Depends(admin)) -> Response:
        keys = _keys(request)
        current = await _found(keys.repo, key_id)
        form = await forms.read_form(request)
        try:
            await changes.update(console, request, session, keys, "key", current, _fields(form))
        except (forms.FormError, InvalidRequest) as err:  # both before any write
            return console.render(request, "key.html", 400, key=current, periods=BUDGET_PERIODS, done=None, error=str(err))
        return RedirectResponse(console.url(request, f"/keys/{current.id}?done=saved"), status_code=303)

    @router.get("/keys/{key_id}/{action}")
    async def confirm(key_id: str, action: str, request: Request, session: Session = Depends(admin)) -> Response:
        if action not in ("revoke", "rotate"):
            raise NotFound("No such page.")
        row = await _found(_keys(request).repo, key_id)
        return console.render(request, "confirm.html", key=row, action=action)

    @router.post("/keys/{key_id}/revoke")
    async def revoke(key_id: str, request: Request, session: Session = Depends(admin)) -> Response:
        keys = _keys(request)
        before = await _found(keys.repo, key_id)
        row = await keys.repo.revoke(before.id)
        await changes.changed(console, request, session, keys, "key.revoke", before, row)
        return RedirectResponse(console.url(request, f"/keys/{before.id}?done=revoked"), status_code=303)

    @router.post("/keys/{key_id}/rotate")
    async def rotate(key_id: str, request: Request, session: Session = Depends(admin)) -> Response:
        keys = _keys(request)
        before = await _found(keys.repo, key_id)
        rotated = await keys.repo.rotate(before.id)
        if rotated is None:
            raise InvalidRequest("A revoked key cannot be rotated.", status=409)
        row, token = rotated
        await changes.changed(console, request, session, keys, "key.rotate", before, row)
        return console.render(request, "key_created.html", key=row, token=token, rotated=True)
